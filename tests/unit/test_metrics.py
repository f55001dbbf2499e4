"""The metric-name extraction that keeps rules and dashboards honest."""

from __future__ import annotations

import pytest

from configs.metrics import METRICS, SOURCES, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (instance, job) (rate(node_cpu_seconds_total{mode="idle", cpu=~"0|1"}[5m]))',
            {"node_cpu_seconds_total"},
        ),
        ("a / on (x) group_left (y) b > bool 3", {"a", "b"}),
        (
            "sum(stories_active_sessions) or sum(nginx_connections_active)",
            {"stories_active_sessions", "nginx_connections_active"},
        ),
        (
            "time() - stories_backup_last_success_timestamp_seconds > 93600",
            {"stories_backup_last_success_timestamp_seconds"},
        ),
        ('count by (alertname) (ALERTS{alertstate="firing", x="a{b}"})', {"ALERTS"}),
        ("stories:db_connection_failure_ratio:5m * 100 > 5e0", {"stories:db_connection_failure_ratio:5m"}),
        ("rate(x[5m] offset 1h)", {"x"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_metric_has_a_known_source() -> None:
    assert set(METRICS.values()) <= set(SOURCES)
