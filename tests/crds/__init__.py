"""Typed models of the custom resources the Kubernetes target emits where no maintained models exist
(CloudNativePG, the Gateway API, Envoy Gateway): only the fields the program sets, each checked by hand
against the project's published CRD of the pinned version (cited in each module), unknown fields
forbidden, so a misspelt or misplaced field fails the test that validates the plan's objects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Strict(BaseModel):
    """camelCase on the wire, as the CRDs spell their fields; anything else is an error."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Metadata(Strict):
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class LocalObjectReference(Strict):
    name: str = Field(min_length=1)


class SecretKeySelector(Strict):
    name: str
    key: str


class Resources(Strict):
    """corev1.ResourceRequirements as the CRDs embed it (claims unused)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
