"""Pulumi resources from the manifests of configs/kubernetes: the built-in kinds by their typed classes
(which the provider knows how to await), the operators' kinds as CustomResources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from configs.kubernetes.common import Manifest

BUILT_IN: Mapping[tuple[str, str], Any] = {
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}


def create(document: Manifest, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """One resource, named `<kind>-<name>` in the stack (lowercase), as the manifest says."""
    api_version, kind, metadata = document["apiVersion"], document["kind"], document["metadata"]
    body = {key: value for key, value in document.items() if key not in ("apiVersion", "kind", "metadata")}
    name = f"{kind.lower()}-{metadata['name']}"
    built_in = BUILT_IN.get((api_version, kind))
    if built_in is not None:
        resource: pulumi.CustomResource = built_in(name, metadata=metadata, opts=opts, **body)
        return resource
    custom: pulumi.CustomResource = k8s.apiextensions.CustomResource(
        name, api_version=api_version, kind=kind, metadata=metadata, opts=opts, **body
    )
    return custom


def create_later(
    api_version: str, kind: str, name: str, document: pulumi.Output[Manifest], opts: pulumi.ResourceOptions
) -> pulumi.CustomResource:
    """One resource whose manifest waits on an output (the backup bucket's name), named as `create` names it."""
    metadata, spec = document.apply(lambda each: each["metadata"]), document.apply(lambda each: each["spec"])
    built_in = BUILT_IN.get((api_version, kind))
    if built_in is not None:
        resource: pulumi.CustomResource = built_in(f"{kind.lower()}-{name}", metadata=metadata, spec=spec, opts=opts)
        return resource
    custom: pulumi.CustomResource = k8s.apiextensions.CustomResource(
        f"{kind.lower()}-{name}", api_version=api_version, kind=kind, metadata=metadata, spec=spec, opts=opts
    )
    return custom


class Group(pulumi.ComponentResource):
    """The objects of one part of the platform, under one component (what `make plan` groups by)."""

    def __init__(self, name: str, documents: list[Manifest], opts: pulumi.ResourceOptions) -> None:
        super().__init__(f"stories:kubernetes:{name.capitalize()}", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.resources = [create(document, child) for document in documents]
        self.register_outputs({})
