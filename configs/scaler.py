"""The scaler's configuration file, and the PromQL that reads its signals (metric names from
configs/metrics.py only: the app's session gauge when it exists, nginx's request rate, cAdvisor's CPU)."""

from __future__ import annotations

import json

from configs.monitoring import SCALER_METRICS_PORT
from model.settings import Settings

SOCKET_PROXY_URL = "http://socket-proxy:2375"
PROMETHEUS_URL = "http://prometheus:9090"


def signal_queries(settings: Settings, stack: str) -> dict[str, str]:
    window = f"{settings.scaling.signal_window_seconds}s"
    app = f'name=~"{stack}-app-[0-9]+"'
    return {
        "active_sessions": "sum(stories_active_sessions)",
        "requests_per_second": f"sum(rate(nginx_http_requests_total[{window}]))",
        "cpu_percent": f"avg(rate(container_cpu_usage_seconds_total{{{app}}}[{window}])"
        f" / (container_spec_cpu_quota{{{app}}} / container_spec_cpu_period{{{app}}})) * 100",
    }


def render_scaler_config(
    settings: Settings, stack: str, prometheus_url: str = PROMETHEUS_URL, docker_url: str = SOCKET_PROXY_URL
) -> str:
    document = {
        "stack": stack,
        "min_replicas": settings.app.replicas,
        "max_replicas": settings.app.max_replicas,
        "scaling": settings.scaling.model_dump(mode="json", by_alias=True),
        "prometheus_url": prometheus_url,
        "docker_url": docker_url,
        "queries": signal_queries(settings, stack),
        "metrics_port": SCALER_METRICS_PORT,
        "stop_timeout_seconds": 30,
    }
    return json.dumps(document, indent=2) + "\n"
