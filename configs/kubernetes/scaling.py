"""The app's KEDA ScaledObject: the school calendar's cron triggers (the floor), the load's Prometheus and
CPU triggers, the settings' bounds and the scaler's stabilisation (one step at a time, down only after
`scaleDownStableMinutes`)."""

from __future__ import annotations

from configs.kubernetes.alerts import app_sessions
from configs.kubernetes.app import APP
from configs.kubernetes.calendar import triggers
from configs.kubernetes.common import Manifest, manifest
from model.settings import Settings


def _one_step(period_seconds: int, stabilisation_seconds: int) -> dict[str, object]:
    return {
        "stabilizationWindowSeconds": stabilisation_seconds,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": period_seconds}],
    }


def scaled_object(settings: Settings, namespace: str, prometheus_url: str) -> Manifest:
    scaling = settings.scaling
    cron = [{"type": "cron", "metadata": t.metadata(scaling.timezone)} for t in triggers(settings)]
    sessions = {
        "type": "prometheus",
        "metadata": {
            "serverAddress": prometheus_url,
            "query": app_sessions(namespace),
            "threshold": str(scaling.load.sessions_per_replica),
            "ignoreNullValues": "true",  # no series until the app exports its sessions and is scraped (app.metricsPath)
        },
    }
    cpu = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": f"{scaling.load.cpu_percent:g}"}}
    behavior = {
        "scaleUp": _one_step(scaling.interval_seconds, 0),
        "scaleDown": _one_step(scaling.interval_seconds, scaling.scale_down_stable_minutes * 60),
    }
    spec = {
        "scaleTargetRef": {"name": APP},
        "minReplicaCount": settings.app.replicas,
        "maxReplicaCount": settings.app.max_replicas,
        "pollingInterval": scaling.interval_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
        "triggers": [*cron, sessions, cpu],
    }
    return manifest("keda.sh/v1alpha1", "ScaledObject", APP, namespace, APP, spec=spec)
