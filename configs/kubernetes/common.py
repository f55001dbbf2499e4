"""What every manifest of the Kubernetes target shares: names, labels, resources, hardened containers."""

from __future__ import annotations

from typing import Any

from model.settings import Resources

Manifest = dict[str, Any]
PART_OF = "stories"
NAME_LABEL = "app.kubernetes.io/name"
# The pod security the policy pack asks of every container (policy/validators.py kubernetes_pod_security).
HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def labels(component: str) -> dict[str, str]:
    return {NAME_LABEL: component, "app.kubernetes.io/part-of": PART_OF}


def selector(component: str) -> dict[str, str]:
    return {NAME_LABEL: component}


def manifest(api_version: str, kind: str, name: str, namespace: str, component: str, **body: Any) -> Manifest:
    metadata = {"name": name, "namespace": namespace, "labels": labels(component)}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def container_resources(resources: Resources) -> dict[str, dict[str, str]]:
    """Requests at the Docker target's reservation (memory) and quota (cpu), limits at its limits: a CPU
    utilisation target then means the same share of the quota as the Docker scaler's."""
    cpu = f"{round(resources.cpus * 1000)}m"
    return {
        "requests": {"memory": f"{resources.memory_reservation_mb}Mi", "cpu": cpu},
        "limits": {"memory": f"{resources.memory_mb}Mi", "cpu": cpu},
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def spread(component: str) -> list[dict[str, Any]]:
    """Replicas across nodes (a must) and zones (where the cluster has them)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": selector(component)},
        }
        for key, when in (
            ("kubernetes.io/hostname", "DoNotSchedule"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        )
    ]


def gib(size: int) -> str:
    return f"{size}Gi"


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An environment variable from a key of a Secret (a secret never goes on a command line)."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def scheduled_job(
    name: str, namespace: str, component: str, pod: dict[str, Any], job: dict[str, Any], **spec: Any
) -> Manifest:
    """A CronJob whose runs never overlap, keeping its last success and last three failures (the alerts read
    the failed Jobs: configs/kubernetes/alerts.py). `job`: the Job's fields besides its pod template; `spec`:
    the schedule and the CronJob's other fields."""
    template = {"metadata": {"labels": selector(component)}, "spec": pod}
    spec = {
        **spec,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {**job, "template": template}},
    }
    return manifest("batch/v1", "CronJob", name, namespace, component, spec=spec)
