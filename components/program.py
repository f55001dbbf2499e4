"""The Pulumi program, as a function: read the stack config, validate it, build the platform.
`__main__.py` runs it under the Pulumi CLI; `make plan` and the tests run it against mocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from model.loading import SECRETS_KEY, SETTINGS_KEY, load_settings
from model.settings import Settings


def read_settings() -> tuple[Settings, pulumi.Output[Mapping[str, str]]]:
    """Settings from `<project>:settings`; operator secrets from `<project>:secrets` (names are
    checked here, values stay inside a secret Output)."""
    config = pulumi.Config()
    raw_secrets: Any = config.get_object(SECRETS_KEY) or {}
    secret_names = set(raw_secrets) if isinstance(raw_secrets, dict) else set()
    settings = load_settings(config.get_object(SETTINGS_KEY), secret_names)
    secrets = config.get_secret_object(SECRETS_KEY, {})
    assert secrets is not None
    return settings, secrets


def build() -> dict[str, pulumi.Input[object]]:
    """Register every resource of the stack and return the stack outputs."""
    settings, secrets = read_settings()
    # Each target's components are imported when it is chosen: a Docker stack's plan does not load
    # pulumi_kubernetes (some 140 modules), nor a Kubernetes stack's the Docker provider.
    if settings.target == "kubernetes":
        from components.kubernetes.platform import KubernetesPlatform

        return KubernetesPlatform("stories", pulumi.get_stack(), settings, secrets).outputs
    from components.platform import Platform

    return Platform("stories", pulumi.get_stack(), settings, secrets).outputs
