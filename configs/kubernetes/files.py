"""The app's served data directories on Kubernetes: Envoy Gateway proxies but cannot serve files from a
volume (the Docker target's nginx does, with `alias`), and a Next.js server does not serve files added to
public/ after its build, so a small static server (the stack's pinned unprivileged nginx image) mounts
the data directories' claims read-only and the gateway routes their URL paths to it. The cache and
security headers are the gateway's (configs/kubernetes/gateway.py), as every other route's."""

from __future__ import annotations

from typing import Any

from configs.kubernetes.app import APP_UID, data_claim
from configs.kubernetes.common import (
    HARDENED,
    Manifest,
    container_resources,
    manifest,
    selector,
    spread,
)
from configs.render import render_files_server, served_data_dirs
from model.settings import Settings

FILES = "files"
FILES_PORT = 8080
FILES_UID = 101  # nginx in the nginx-unprivileged image
FILES_CONFIG = "files-config"
DATA_ROOT = "/data"
SCRATCH_DIR = "/tmp"  # an emptyDir: the root is read-only
HEALTH_PATH = "/healthz"


def config_map(settings: Settings, namespace: str) -> Manifest:
    data = {"nginx.conf": render_files_server(settings, FILES_PORT, DATA_ROOT, SCRATCH_DIR, HEALTH_PATH)}
    return manifest("v1", "ConfigMap", FILES_CONFIG, namespace, FILES, data=data)


def deployment(settings: Settings, namespace: str) -> Manifest:
    """Two replicas across nodes. The pod's fsGroup is the app's, so that the shared claims keep the
    app's group (a different fsGroup would have the kubelet change the files' group) and nginx reads them."""
    served = served_data_dirs(settings)
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf", "readOnly": True},
        {"name": "tmp", "mountPath": SCRATCH_DIR},
    ]
    mounts += [
        {"name": f"data-{each.name}", "mountPath": f"{DATA_ROOT}/{each.name}", "readOnly": True} for each in served
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": FILES_CONFIG}},
        {"name": "tmp", "emptyDir": {}},
    ]
    volumes += [
        {
            "name": f"data-{each.name}",
            "persistentVolumeClaim": {"claimName": data_claim(each.name), "readOnly": True},
        }
        for each in served
    ]
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": FILES,
        "image": settings.images.nginx,
        "ports": [{"name": "http", "containerPort": FILES_PORT}],
        "resources": container_resources(settings.proxy.resources),
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "securityContext": HARDENED,
        "volumeMounts": mounts,
    }
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": FILES_UID,
            "runAsGroup": FILES_UID,
            "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": spread(FILES),
        "automountServiceAccountToken": False,
    }
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": selector(FILES)},
        "template": {"metadata": {"labels": selector(FILES)}, "spec": pod},
    }
    return manifest("apps/v1", "Deployment", FILES, namespace, FILES, spec=spec)


def service(namespace: str) -> Manifest:
    port = {"name": "http", "port": FILES_PORT, "targetPort": "http"}
    return manifest("v1", "Service", FILES, namespace, FILES, spec={"selector": selector(FILES), "ports": [port]})
