"""Redis on Kubernetes: the pinned official image as a StatefulSet with the Docker target's rendered
redis.conf (a ConfigMap) and ACL file (a Secret, built where the passwords are), a claim, probes, and
the exporter beside it. A single Redis holds sessions and caches only, so no operator is worth its upkeep."""

from __future__ import annotations

from typing import Any

from configs import healthchecks
from configs.kubernetes.common import HARDENED, Manifest, container_resources, gib, manifest, pod_security, selector
from configs.render import image_versions, render_redis
from model.settings import Settings
from model.topology import REDIS_PORT, container_topology

REDIS = "redis"
REDIS_UID = 999  # the redis image's user
CONFIG_MAP = "redis-config"
ACL_SECRET = "redis-acl"  # users.acl, and the exporter's and the probe's passwords
EXPORTER_PORT = 9121


def config_map(settings: Settings, namespace: str) -> Manifest:
    topo = container_topology(settings)
    data = render_redis(settings, topo, image_versions(settings))
    return manifest("v1", "ConfigMap", CONFIG_MAP, namespace, REDIS, data=data)


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ACL_SECRET, "key": key}}}


def stateful_set(settings: Settings, namespace: str) -> Manifest:
    topo = container_topology(settings)
    probe = {"exec": {"command": healthchecks.redis(topo)}, "periodSeconds": 10, "timeoutSeconds": 3}
    exporter_resources = settings.monitoring.resources.exporter
    config_volume = {
        "name": "config",
        "projected": {
            "sources": [
                {"configMap": {"name": CONFIG_MAP}},
                {"secret": {"name": ACL_SECRET, "items": [{"key": "users.acl", "path": "users.acl"}]}},
            ]
        },
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": gib(settings.kubernetes.redis_storage_gb)}},
    }
    if settings.kubernetes.storage_class:
        claim_spec["storageClassName"] = settings.kubernetes.storage_class
    pod = {
        "securityContext": pod_security(REDIS_UID),
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": REDIS,
                "image": settings.images.redis,
                "command": ["redis-server", f"{topo.redis_config_dir}/redis.conf"],
                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                "env": [_secret_env("REDISCLI_AUTH", "healthcheck-password")],
                "resources": container_resources(settings.redis.resources),
                "readinessProbe": probe,
                "livenessProbe": {**probe, "failureThreshold": 6},
                "securityContext": HARDENED,
                "volumeMounts": [
                    {"name": "config", "mountPath": topo.redis_config_dir, "readOnly": True},
                    {"name": "data", "mountPath": topo.redis_data_dir},
                ],
            },
            {
                "name": "exporter",
                "image": settings.images.redis_exporter,
                "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
                "env": [
                    {"name": "REDIS_ADDR", "value": f"redis://127.0.0.1:{REDIS_PORT}"},
                    {"name": "REDIS_USER", "value": "exporter"},
                    _secret_env("REDIS_PASSWORD", "exporter-password"),
                ],
                "resources": container_resources(exporter_resources),
                "securityContext": HARDENED,
            },
        ],
        "volumes": [config_volume],
    }
    spec = {
        "serviceName": REDIS,
        "replicas": 1,
        "selector": {"matchLabels": selector(REDIS)},
        "template": {"metadata": {"labels": selector(REDIS)}, "spec": pod},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim_spec}],
    }
    return manifest("apps/v1", "StatefulSet", REDIS, namespace, REDIS, spec=spec)


def service(namespace: str) -> Manifest:
    ports = [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}]
    ports.append({"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics"})
    return manifest("v1", "Service", REDIS, namespace, REDIS, spec={"selector": selector(REDIS), "ports": ports})
