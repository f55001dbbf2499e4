"""What every rule reads: a resource as a policy sees it, and the labels the program puts on containers.

Inputs are the camelCase properties Pulumi sends to the provider, as in `make plan FORMAT=json`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
LABEL = "org.1001stories."

Props = Mapping[str, Any]


@dataclass(frozen=True)
class Resource:
    """One registered resource, as a stack policy sees it."""

    type: str
    name: str
    parent: str | None
    props: Props


def labels(props: Props) -> dict[str, str]:
    return {str(item.get("label")): str(item.get("value")) for item in props.get("labels") or []}


def service(props: Props, name: str) -> str:
    return labels(props).get(f"{LABEL}service", name)


def is_config_container(props: Props) -> bool:
    """A container that only holds a service's uploaded files: created, never started."""
    return labels(props).get(f"{LABEL}role") == "config" and props.get("start") is False


ResourceValidator = Callable[[str, Props, str], list[str]]


@dataclass(frozen=True)
class ResourcePolicy:
    name: str
    description: str
    validate: ResourceValidator


@dataclass(frozen=True)
class StackPolicy:
    name: str
    description: str
    validate: Callable[[Sequence[Resource]], list[str]]
