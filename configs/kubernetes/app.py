"""The app on Kubernetes: a hardened Deployment (migration as an init container), its Service, its
PodDisruptionBudget, and the shared volumes of its data directories."""

from __future__ import annotations

from typing import Any

from configs.kubernetes.common import (
    HARDENED,
    Manifest,
    container_resources,
    gib,
    manifest,
    pod_security,
    selector,
    spread,
)
from model.settings import Settings
from model.topology import POSTGRES_CLUSTER

APP = "app"
APP_UID = 1001  # nextjs:nodejs in the app's image
APP_ENV_SECRET = "app-env"  # DATABASE_URL, REDIS_URL, NEXTAUTH_SECRET, CRON_SECRET, the operator's secret env
MIGRATION_URL_KEY = "MIGRATION_DATABASE_URL"
APP_CONFIG_DIR = "/etc/stories/app"  # the database CA, where the Docker target's DATABASE_URL expects it
DATABASE_CA_SECRET = f"{POSTGRES_CLUSTER}-ca"  # CloudNativePG's CA (server and pooler certificates)


def data_claim(name: str) -> str:
    return f"app-{name}"


def data_claims(settings: Settings, namespace: str) -> list[Manifest]:
    """One ReadWriteMany claim per data directory: every replica reads what another wrote."""
    k8s = settings.kubernetes
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": gib(k8s.data_storage_gb)}},
    }
    if k8s.shared_storage_class:
        spec["storageClassName"] = k8s.shared_storage_class
    return [
        manifest("v1", "PersistentVolumeClaim", data_claim(each.name), namespace, APP, spec=spec)
        for each in settings.app.data_dirs
    ]


def _env(settings: Settings) -> list[dict[str, str]]:
    plain = {
        "NODE_ENV": "production",
        "PORT": str(settings.app.port),
        "HOSTNAME": "0.0.0.0",
        "NEXTAUTH_URL": settings.public_url,
        **settings.app.env,
    }
    return [{"name": key, "value": value} for key, value in plain.items()]


def _probe(settings: Settings, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": settings.app.health_path, "port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _scratch(settings: Settings) -> dict[str, str]:
    return {"tmp": "/tmp", "app-tmp": settings.app.tmp_path, "next-cache": settings.app.cache_path}


def _migration(settings: Settings) -> dict[str, Any]:
    """Prisma Migrate straight to Postgres before a pod's app starts; each pod runs it, and it waits on
    Prisma's advisory lock and applies nothing twice."""
    migration = settings.app.migration
    url = {"secretKeyRef": {"name": APP_ENV_SECRET, "key": MIGRATION_URL_KEY}}
    return {
        "name": "migration",
        "image": migration.image or settings.app.image,
        "command": migration.command,
        "env": [{"name": "DATABASE_URL", "valueFrom": url}, {"name": "NPM_CONFIG_CACHE", "value": "/tmp/.npm"}],
        "resources": container_resources(migration.resources),
        "securityContext": HARDENED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "database-ca", "mountPath": APP_CONFIG_DIR}],
    }


def deployment(settings: Settings, namespace: str, scaled: bool) -> Manifest:
    """`scaled`: KEDA's HPA owns the replica count, so the Deployment leaves it out."""
    app = settings.app
    mounts: list[dict[str, Any]] = [{"name": name, "mountPath": path} for name, path in _scratch(settings).items()]
    mounts += [{"name": f"data-{each.name}", "mountPath": each.path} for each in app.data_dirs]
    mounts.append({"name": "database-ca", "mountPath": APP_CONFIG_DIR, "readOnly": True})
    volumes: list[dict[str, Any]] = [{"name": name, "emptyDir": {}} for name in _scratch(settings)]
    volumes += [
        {"name": f"data-{each.name}", "persistentVolumeClaim": {"claimName": data_claim(each.name)}}
        for each in app.data_dirs
    ]
    ca_items = [{"key": "ca.crt", "path": "database-ca.crt"}]
    volumes.append({"name": "database-ca", "secret": {"secretName": DATABASE_CA_SECRET, "items": ca_items}})
    container = {
        "name": APP,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port}],
        "env": _env(settings),
        "envFrom": [{"secretRef": {"name": APP_ENV_SECRET}}],
        "resources": container_resources(app.resources),
        "readinessProbe": _probe(settings, 3),
        "livenessProbe": _probe(settings, 6),
        "securityContext": HARDENED,
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "securityContext": pod_security(APP_UID),
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": spread(APP),
        "automountServiceAccountToken": False,
    }
    if app.migration.enabled:
        pod["initContainers"] = [_migration(settings)]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(APP)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": selector(APP)}, "spec": pod},
    }
    if not scaled:
        spec["replicas"] = app.replicas
    return manifest("apps/v1", "Deployment", APP, namespace, APP, spec=spec)


def service(settings: Settings, namespace: str) -> Manifest:
    port = {"name": "http", "port": settings.app.port, "targetPort": "http"}
    return manifest("v1", "Service", APP, namespace, APP, spec={"selector": selector(APP), "ports": [port]})


def disruption_budget(namespace: str) -> Manifest:
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": selector(APP)}}
    return manifest("policy/v1", "PodDisruptionBudget", APP, namespace, APP, spec=spec)
