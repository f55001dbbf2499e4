"""Monitoring objects for kube-prometheus-stack: the Docker target's alert rules as PrometheusRules, its
dashboards as ConfigMaps for Grafana's sidecar, and PodMonitors/ServiceMonitors of Postgres, the pooler
and Redis."""

from __future__ import annotations

import yaml

from configs import monitoring
from configs.dashboards import render_dashboards
from configs.kubernetes.common import Manifest, manifest
from configs.kubernetes.network import POOLER_PODS, POSTGRES_PODS
from configs.kubernetes.redis import REDIS
from model.settings import Settings

MONITORING = "monitoring.coreos.com/v1"
DASHBOARD_LABEL = "grafana_dashboard"  # the chart's Grafana sidecar picks up ConfigMaps with it


def _object_name(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0].replace("_", "-").lower()


def prometheus_rules(settings: Settings, namespace: str) -> list[Manifest]:
    return [
        manifest(MONITORING, "PrometheusRule", _object_name(name), namespace, "monitoring", spec=yaml.safe_load(text))
        for name, text in monitoring.render_rules(settings).items()
    ]


def dashboards(settings: Settings, namespace: str) -> list[Manifest]:
    result = []
    for name, text in render_dashboards(settings).items():
        document = manifest(
            "v1", "ConfigMap", f"dashboard-{_object_name(name)}", namespace, "monitoring", data={name: text}
        )
        document["metadata"]["labels"][DASHBOARD_LABEL] = "1"
        result.append(document)
    return result


def monitors(settings: Settings, namespace: str) -> list[Manifest]:
    interval = f"{settings.monitoring.scrape_interval_seconds}s"
    endpoint = {"port": "metrics", "interval": interval}
    return [
        manifest(
            MONITORING,
            "PodMonitor",
            name,
            namespace,
            "monitoring",
            spec={"selector": {"matchLabels": pods}, "podMetricsEndpoints": [endpoint]},
        )
        for name, pods in (("postgres", POSTGRES_PODS), ("pooler", POOLER_PODS))
    ] + [
        manifest(
            MONITORING,
            "ServiceMonitor",
            REDIS,
            namespace,
            "monitoring",
            spec={"selector": {"matchLabels": {"app.kubernetes.io/name": REDIS}}, "endpoints": [endpoint]},
        )
    ]
