"""Grafana dashboards as code, built with Grafana's own SDK (grafana-foundation-sdk, the release line of the
pinned Grafana) and written by its encoder, keys sorted: the same settings give the same bytes.

A panel is data (title, unit, queries); the SDK's typed builders turn it into Grafana's dashboard model.
Every query names only metrics of configs/metrics.py (tests/unit/test_dashboards.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from configs.monitoring import BLACKBOX_JOB, GRAFANA_DATASOURCE_UID
from model.settings import BackupSettings, Settings

GRID_COLUMNS = 24  # Grafana's grid
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=GRAFANA_DATASOURCE_UID)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """`thresholds`: (value, colour) steps above the base green; a stat panel colours its background by
    them, a timeseries draws them as dashed lines. `width` in grid columns: each row of a dashboard must
    add up to 24."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "stat"] = "timeseries"
    thresholds: tuple[tuple[float, str], ...] = ()
    description: str = ""
    width: int = 12
    height: int = 8


def graph(title: str, expr: str, unit: str, legend: str = "") -> Panel:
    """A timeseries of one query, half the width."""
    return Panel(title, unit, (Query(expr, legend),))


@dataclass(frozen=True)
class Dashboard:
    uid: str  # the file's name; Grafana's uid is `stories-<uid>`
    title: str
    panels: tuple[Panel, ...]


INFRASTRUCTURE = Dashboard(
    "infrastructure",
    "1001 Stories: infrastructure",
    (
        graph(
            "Host CPU used", '(1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))) * 100', "percent"
        ),
        graph("Host memory used", "(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100", "percent"),
        graph(
            "Disk free",
            'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"}'
            " * 100",
            "percent",
            "{{mountpoint}}",
        ),
        graph("Load (1 min)", "node_load1", "short"),
        graph("Container CPU (cores)", 'rate(container_cpu_usage_seconds_total{name!=""}[5m])', "short", "{{name}}"),
        graph(
            "Container memory vs limit",
            'container_memory_working_set_bytes{name!=""} / (container_spec_memory_limit_bytes{name!=""} > 0) * 100',
            "percent",
            "{{name}}",
        ),
        graph("Targets up", "up", "short", "{{job}}"),
        graph("Firing alerts", 'count by (alertname) (ALERTS{alertstate="firing"})', "short", "{{alertname}}"),
    ),
)

DATABASE = Dashboard(
    "database",
    "1001 Stories: database and pool",
    (
        graph("Postgres backends", "sum(pg_stat_database_numbackends)", "short"),
        graph(
            "Connections vs max",
            "sum(pg_stat_database_numbackends) / max(pg_settings_max_connections) * 100",
            "percent",
        ),
        graph("Transactions/s", "sum(rate(pg_stat_database_xact_commit[5m]))", "ops"),
        graph("Rollbacks/s", "sum(rate(pg_stat_database_xact_rollback[5m]))", "ops"),
        graph("Deadlocks", "sum(increase(pg_stat_database_deadlocks[1h]))", "short"),
        graph("Database size", "pg_database_size_bytes", "bytes", "{{datname}}"),
        graph("Connection failure ratio", "stories:db_connection_failure_ratio:5m * 100", "percent"),
        graph("Pool: active clients", "sum(pgbouncer_pools_client_active_connections)", "short"),
        graph("Pool: waiting clients", "sum(pgbouncer_pools_client_waiting_connections)", "short"),
        graph(
            "Pool: server connections",
            "sum(pgbouncer_pools_server_active_connections) + sum(pgbouncer_pools_server_idle_connections)",
            "short",
        ),
        graph("Pool: longest wait", "max(pgbouncer_pools_client_maxwait_seconds)", "s"),
        graph("Redis memory vs maxmemory", "redis_memory_used_bytes / redis_memory_max_bytes * 100", "percent"),
        graph("Redis evictions/s", "rate(redis_evicted_keys_total[5m])", "ops"),
        graph(
            "Redis hit ratio",
            "rate(redis_keyspace_hits_total[5m]) / (rate(redis_keyspace_hits_total[5m]) + "
            "rate(redis_keyspace_misses_total[5m]))",
            "percentunit",
        ),
    ),
)

PLATFORM = Dashboard(
    "platform",
    "1001 Stories: platform usage",
    (
        graph("Active sessions", "stories:active_sessions", "short"),
        graph("Requests/s", "stories:http_requests:rate1m", "reqps"),
        graph("Active client connections", "nginx_connections_active", "short"),
        graph("Health check latency", f'probe_duration_seconds{{job="{BLACKBOX_JOB}"}}', "s", "{{instance}}"),
        graph("Healthy replicas", f'sum(probe_success{{job="{BLACKBOX_JOB}"}})', "short"),
        graph("Redis clients", "redis_connected_clients", "short"),
        graph("Scaler: running replicas", "stories_scaler_running_replicas", "short", "running"),
        graph("Scaler: desired replicas", "stories_scaler_desired_replicas", "short", "desired"),
        graph("Scaler: schedule floor", "stories_scaler_floor_replicas", "short", "floor"),
        graph(
            "Scaler: decisions by reason",
            "sum by (code) (increase(stories_scaler_decisions_total[1h]))",
            "short",
            "{{code}}",
        ),
        graph("Backup age (hours)", "(time() - stories_backup_last_success_timestamp_seconds) / 3600", "h", "{{kind}}"),
        graph(
            "Scheduled calls: hours since the last success",
            "(time() - stories_cron_last_success_timestamp_seconds) / 3600",
            "h",
            "{{cronjob}}",
        ),
        graph("Scheduled calls: last duration", "stories_cron_last_duration_seconds", "s", "{{cronjob}}"),
    ),
)


OVERVIEW_UID = "overview"
# PgBouncer's admin console: SHOW POOLS and SHOW DATABASES list it too, but it is no pool of the app's.
CONSOLE = "pgbouncer"


def wal_archive_age(backup: BackupSettings) -> Panel:
    switch = backup.postgres.archive_timeout_seconds
    return Panel(
        "WAL archive age",
        "s",
        (
            Query("pg_stat_archiver_last_archive_age", "postgres"),
            Query("stories_backup_wal_last_archived_age_seconds", "backup service"),
        ),
        kind="stat",
        thresholds=((2 * switch, "orange"), (backup.rpo_minutes * 60, "red")),
        description=f"Time since PostgreSQL last archived a WAL segment (pg_stat_archiver), read by the exporter "
        f"and by the backup service. While the heartbeat writes, a segment is switched every {switch} s "
        f"(backup.postgres.archiveTimeoutSeconds): orange at twice that, red at the RPO ({backup.rpo_minutes} min).",
        width=8,
        height=6,
    )


def freshness(title: str, last_success: str, interval: str, label: str, late_factor: float, alert: str) -> Panel:
    """Time since each job's last success in percent of its schedule's interval: 100% is due, the `alert`
    fires above late_factor times the interval."""
    return Panel(
        title,
        "percent",
        (Query(f"(time() - {last_success}) / {interval} * 100", f"{{{{{label}}}}}"),),
        kind="stat",
        thresholds=((100, "orange"), (late_factor * 100, "red")),
        description=f"Time since the last success as a share of the schedule's interval ({interval}): 100% means "
        f"the next run is due; {alert} fires above {late_factor * 100:g}%.",
        width=8,
        height=6,
    )


def pool_saturation() -> Panel:
    return Panel(
        "PgBouncer pool saturation",
        "short",
        (
            Query(
                f'sum by (database) (pgbouncer_pools_client_waiting_connections{{database!="{CONSOLE}"}})',
                "{{database}}: clients waiting",
            ),
            Query(f'pgbouncer_databases_current_connections{{name!="{CONSOLE}"}}', "{{name}}: server connections"),
            Query(f'pgbouncer_databases_pool_size{{name!="{CONSOLE}"}}', "{{name}}: pool size"),
            Query(f'pgbouncer_databases_max_connections{{name!="{CONSOLE}"}}', "{{name}}: cap (pool + reserve)"),
        ),
        description="Server connections against the pool: once they reach the pool size, clients wait; after "
        "reserve_pool_timeout the reserve opens, up to the cap (max_db_connections). Waiting clients at the cap: "
        "raise the pool or find the slow queries (make db-top).",
    )


def scaler_against_schedule(max_replicas: int) -> Panel:
    return Panel(
        "Scaler: decisions against the schedule",
        "short",
        (
            Query("stories_scaler_desired_replicas", "desired"),
            Query("stories_scaler_running_replicas", "running"),
            Query("stories_scaler_floor_replicas", "schedule floor"),
        ),
        thresholds=((max_replicas, "red"),),
        description=f"The scaler's last decision (desired), the replicas running, and the school calendar's floor "
        f"now; the dashed line is app.maxReplicas ({max_replicas}). Desired above the floor: load asked for more. "
        "Running apart from desired for longer than a round: starting or stopping replicas fails (scaler log). "
        "Empty when scaling is off.",
    )


def overview(settings: Settings) -> Dashboard:
    """What an operator looks at first: archiving and backups against their schedules, the app's scheduled
    calls, the pool's headroom and the scaler against the calendar; thresholds from the stack's settings."""
    return Dashboard(
        OVERVIEW_UID,
        "1001 Stories: overview",
        (
            wal_archive_age(settings.backup),
            freshness(
                "Backups: age against the schedule",
                "stories_backup_last_success_timestamp_seconds",
                "stories_backup_expected_interval_seconds",
                label="kind",
                late_factor=settings.backup.late_factor,
                alert="BackupLate",
            ),
            freshness(
                "Scheduled calls: last success against the schedule",
                "stories_cron_last_success_timestamp_seconds",
                "stories_cron_expected_interval_seconds",
                label="cronjob",
                late_factor=settings.cron.late_factor,
                alert="CronCallLate",
            ),
            pool_saturation(),
            scaler_against_schedule(settings.app.max_replicas),
        ),
    )


def dashboards(settings: Settings) -> tuple[Dashboard, ...]:
    return (overview(settings), INFRASTRUCTURE, DATABASE, PLATFORM)


PanelBuilder = TypeVar("PanelBuilder", timeseries.Panel, stat.Panel)


def _thresholds(steps: tuple[tuple[float, str], ...]) -> dashboard_builders.ThresholdsConfig:
    base = model.Threshold(value=None, color="green")  # null: from minus infinity
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([base, *(model.Threshold(value=value, color=color) for value, color in steps)])
    )


def _with_common(builder: PanelBuilder, panel: Panel, panel_id: int) -> PanelBuilder:
    """What every panel has, whatever its kind: its id, place, data source, unit and queries."""
    builder = (
        builder.id(panel_id)
        .title(panel.title)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
        .targets(
            [
                prometheus.Dataquery().ref_id(chr(ord("A") + index)).expr(query.expr).legend_format(query.legend)
                for index, query in enumerate(panel.queries)
            ]
        )
    )
    if panel.description:
        builder = builder.description(panel.description)
    if panel.thresholds:
        builder = builder.thresholds(_thresholds(panel.thresholds))
    return builder


def _timeseries(panel: Panel, panel_id: int) -> timeseries.Panel:
    builder = _with_common(timeseries.Panel(), panel, panel_id)
    if panel.thresholds:
        builder = builder.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    return builder


def _stat(panel: Panel, panel_id: int) -> stat.Panel:
    """The last value of each series, its background coloured by the thresholds, a sparkline behind."""
    return (
        _with_common(stat.Panel(), panel, panel_id)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )


def build(spec: Dashboard) -> model.Dashboard:
    """The dashboard in Grafana's model. The SDK places each panel after the previous one, left to right,
    starting a new row when one is full. Provisioned read-only: edits belong in this file."""
    builder = (
        dashboard_builders.Dashboard(spec.title)
        .uid(f"stories-{spec.uid}")
        .tags(["1001-stories"])
        .timezone(common.TimeZoneBrowser)
        .readonly()
        .version(1)
        .refresh("1m")
        .time("now-6h", "now")
    )
    for panel_id, panel in enumerate(spec.panels, start=1):
        builder = builder.with_panel(_stat(panel, panel_id) if panel.kind == "stat" else _timeseries(panel, panel_id))
    return builder.build()


def render_dashboards(settings: Settings) -> dict[str, str]:
    """`{<uid>.json: JSON}` for Grafana's file provisioning."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {f"{spec.uid}.json": encoder.encode(build(spec)) + "\n" for spec in dashboards(settings)}
