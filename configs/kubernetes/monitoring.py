"""Monitoring objects for kube-prometheus-stack: the alert and recording rules as PrometheusRules (those of the
Docker target that apply, and the backup alerts: configs/kubernetes/alerts.py), the Docker target's dashboards as
ConfigMaps for Grafana's sidecar, and PodMonitors/ServiceMonitors of Postgres, the pooler, Redis, the app and the
gateway's Envoy proxies."""

from __future__ import annotations

from configs import monitoring
from configs.dashboards import render_dashboards
from configs.kubernetes import alerts
from configs.kubernetes.app import APP
from configs.kubernetes.common import NAME_LABEL, Manifest, manifest, selector
from configs.kubernetes.gateway import GATEWAY
from configs.kubernetes.network import POOLER_PODS, POSTGRES_PODS
from configs.kubernetes.redis import REDIS
from model.settings import Settings

MONITORING = "monitoring.coreos.com/v1"
DASHBOARD_LABEL = "grafana_dashboard"  # the chart's Grafana sidecar picks up ConfigMaps with it


def _object_name(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0].replace("_", "-").lower()


def prometheus_rules(settings: Settings, namespace: str) -> list[Manifest]:
    """One PrometheusRule per rule file that has rules."""
    files = monitoring.rule_files(alerts.alert_rules(settings, namespace), alerts.recording_rules(settings, namespace))
    return [
        manifest(MONITORING, "PrometheusRule", _object_name(name), namespace, "monitoring", spec=spec)
        for name, spec in files.items()
        if any(group["rules"] for group in spec["groups"])
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


def _pod_monitor(name: str, namespace: str, pods: dict[str, str], **endpoint: str) -> Manifest:
    spec = {"selector": {"matchLabels": pods}, "podMetricsEndpoints": [endpoint]}
    return manifest(MONITORING, "PodMonitor", name, namespace, "monitoring", spec=spec)


def app_monitor(namespace: str, path: str, interval: str) -> Manifest:
    """Every app replica on `path` (app.metricsPath) at its HTTP port, as job `app` (the pods' name label: the
    Docker target's job name), with the pod's namespace and name."""
    document = _pod_monitor(APP, namespace, selector(APP), port="http", path=path, interval=interval)
    document["spec"]["jobLabel"] = NAME_LABEL
    return document


def gateway_monitor(settings: Settings, namespace: str, interval: str) -> Manifest:
    """The Envoy proxies of the stack's Gateway, for their request times (SlowResponses). Envoy Gateway v1.8.3
    runs them in its own namespace, labelled as its proxies (internal/infrastructure/kubernetes/proxy/resource.go
    EnvoyAppLabel) and by their Gateway (internal/gatewayapi/translator.go OwningGateway*Label), and serves
    Prometheus' format on their port `metrics` (19001) at /stats/prometheus. Named after the stack's namespace,
    since other stacks' monitors may share that namespace; nothing there restricts ingress."""
    pods = {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "gateway.envoyproxy.io/owning-gateway-name": GATEWAY,
        "gateway.envoyproxy.io/owning-gateway-namespace": namespace,
    }
    envoy = settings.kubernetes.operators.envoy_gateway.namespace
    return _pod_monitor(
        f"{namespace}-{GATEWAY}", envoy, pods, port="metrics", path="/stats/prometheus", interval=interval
    )


def monitors(settings: Settings, namespace: str) -> list[Manifest]:
    interval = f"{settings.monitoring.scrape_interval_seconds}s"
    # CloudNativePG 1.27.0 names its exporters' container ports `metrics` (pkg/specs/pods.go: 9187 on the
    # instances, which carry cnpg.io/cluster and cnpg.io/podRole=instance; pkg/specs/pgbouncer/deployments.go:
    # 9127 on the pooler's pods), as configs/kubernetes/redis.py names the Redis exporter's.
    endpoint = {"port": "metrics", "interval": interval}
    documents = [
        _pod_monitor(name, namespace, pods, **endpoint)
        for name, pods in (("postgres", POSTGRES_PODS), ("pooler", POOLER_PODS))
    ]
    documents.append(
        manifest(
            MONITORING,
            "ServiceMonitor",
            REDIS,
            namespace,
            "monitoring",
            spec={"selector": {"matchLabels": {NAME_LABEL: REDIS}}, "endpoints": [endpoint]},
        )
    )
    documents.append(gateway_monitor(settings, namespace, interval))
    if settings.app.metrics_path:
        documents.append(app_monitor(namespace, settings.app.metrics_path, interval))
    return documents
