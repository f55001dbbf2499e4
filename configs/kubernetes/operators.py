"""The operators' Helm charts: where each comes from, and its values from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from configs.kubernetes.monitoring import DASHBOARD_LABEL
from model.settings import HelmChart, Settings

# cert-manager's HTTP-01 solver through the Gateway API (an HTTPRoute per challenge) is off unless asked
# for; it looks for the Gateway API's CRDs when it starts, so it is installed after Envoy Gateway's chart.
CERT_MANAGER_CONFIG = {
    "apiVersion": "controller.config.cert-manager.io/v1alpha1",
    "kind": "ControllerConfiguration",
    "enableGatewayAPI": True,
}


@dataclass(frozen=True)
class Chart:
    name: str  # the release's name
    chart: str
    repository: str | None  # None: `chart` is an OCI reference
    settings: HelmChart
    values: dict[str, Any]
    after: tuple[str, ...] = ()  # releases (when enabled) that must be installed first


def charts(settings: Settings) -> list[Chart]:
    """The enabled operators. Envoy Gateway implements the Gateway API (a CNCF Envoy project with policy
    resources for rate limits, headers and TLS); kube-prometheus-stack selects every rule and monitor."""
    operators, monitoring = settings.kubernetes.operators, settings.monitoring
    prometheus = {
        "retention": f"{monitoring.retention_days}d",
        "scrapeInterval": f"{monitoring.scrape_interval_seconds}s",
        **{f"{kind}SelectorNilUsesHelmValues": False for kind in ("rule", "serviceMonitor", "podMonitor")},
    }
    grafana = {
        "enabled": monitoring.grafana.enabled,
        "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "searchNamespace": "ALL"}},
    }
    every = [
        Chart(
            "cloudnative-pg", "cloudnative-pg", "https://cloudnative-pg.github.io/charts", operators.cloudnative_pg, {}
        ),
        Chart("keda", "keda", "https://kedacore.github.io/charts", operators.keda, {}),
        Chart("envoy-gateway", "oci://docker.io/envoyproxy/gateway-helm", None, operators.envoy_gateway, {}),
        Chart(
            "cert-manager",
            "cert-manager",
            "https://charts.jetstack.io",
            operators.cert_manager,
            {"crds": {"enabled": True}, "config": CERT_MANAGER_CONFIG},
            after=("envoy-gateway",),
        ),
        Chart(
            "kube-prometheus-stack",
            "kube-prometheus-stack",
            "https://prometheus-community.github.io/helm-charts",
            operators.kube_prometheus_stack,
            {"prometheus": {"prometheusSpec": prometheus}, "grafana": grafana},
        ),
    ]
    return [chart for chart in every if chart.settings.enabled]
