"""The Grafana dashboards: Grafana's SDK model reads back all they say, file provisioning finds them (uids,
data source), their grids hold, their bytes are stable, and every query names only metrics the stack
provides (the metric contract, configs/metrics.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus

from configs import dashboards, monitoring
from configs.metrics import METRICS, metric_names
from model.loading import load_settings
from model.settings import Settings
from tests.unit.test_settings import with_changes
from tools.plan import STACKS, settings_for

ROOT = Path(__file__).resolve().parents[2]
PROD = settings_for("prod")
# Not the defaults, so each threshold is seen to come from its key.
TUNED = load_settings(
    with_changes(
        ("backup.rpoMinutes", 20),
        ("backup.lateFactor", 3),
        ("backup.postgres.archiveTimeoutSeconds", 30),
        ("cron.lateFactor", 1.5),
        ("app.maxReplicas", 7),
    )
)


def rendered(settings: Settings = PROD) -> dict[str, dict[str, Any]]:
    return {name: json.loads(content) for name, content in dashboards.render_dashboards(settings).items()}


def dashboard_queries(settings: Settings) -> list[tuple[str, str]]:
    """(where, expr) of every query of every rendered panel."""
    return [
        (f"{name}: {panel['title']}", target["expr"])
        for name, dashboard in rendered(settings).items()
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_every_query_names_only_metrics_the_stack_provides(stack: str) -> None:
    queries = dashboard_queries(settings_for(stack))
    assert len(queries) >= 20
    for where, expr in queries:
        unknown = metric_names(expr) - set(METRICS)
        assert not unknown, f"{where} uses {unknown}, which no exporter or rule of the stack provides"


def contains(outer: Any, inner: Any) -> bool:
    """Every key and value of `inner` is in `outer` (lists element by element)."""
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(key in outer and contains(outer[key], inner[key]) for key in inner)
    if isinstance(inner, list):
        return isinstance(outer, list) and len(outer) == len(inner) and all(map(contains, outer, inner))
    return bool(outer == inner)


@pytest.mark.parametrize("settings", [PROD, TUNED], ids=["prod", "tuned"])
def test_grafanas_model_reads_back_everything_the_files_say(settings: Settings) -> None:
    """Decoded with the SDK's model (what Grafana's schema for this version knows), written again: no key of
    ours is dropped as unknown, every panel is a panel and every query a Prometheus query."""
    register_default_plugins()
    for name, document in rendered(settings).items():
        decoded = model.Dashboard.from_json(document)
        assert contains(json.loads(JSONEncoder().encode(decoded)), document), name
        for panel in decoded.panels or []:
            assert isinstance(panel, model.Panel) and panel.targets, (name, panel.title)
            assert all(isinstance(target, prometheus.Dataquery) for target in panel.targets), panel.title


def provisioned_datasource() -> dict[str, Any]:
    document = yaml.safe_load(monitoring.render_grafana_provisioning()["datasources.yml"])
    (datasource,) = document["datasources"]
    return dict(datasource)


def test_file_provisioning_finds_each_dashboard_and_its_data_source() -> None:
    datasource = provisioned_datasource()
    documents = rendered()
    uids = [document["uid"] for document in documents.values()]
    assert len(set(uids)) == len(uids)
    for name, document in documents.items():
        assert document["uid"] == f"stories-{name.removesuffix('.json')}" and len(document["uid"]) <= 40
        assert document["title"].startswith("1001 Stories: ") and document["editable"] is False
        for panel in document["panels"]:
            assert panel["datasource"] == {"type": datasource["type"], "uid": datasource["uid"]}, panel["title"]
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_panels_fill_grafanas_grid_without_overlapping() -> None:
    for name, document in rendered().items():
        ids = [panel["id"] for panel in document["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in document["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= dashboards.GRID_COLUMNS, (name, panel["title"])
            covered = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not covered & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= covered


@pytest.mark.parametrize("seed", ["1", "2"])
def test_the_same_settings_give_the_same_bytes(seed: str) -> None:
    """Another interpreter with another hash seed writes identical files (the plan diff shows real changes)."""
    script = (
        "import json, configs.dashboards as d, tools.plan as p; "
        "print(json.dumps(d.render_dashboards(p.settings_for('prod'))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout) == dashboards.render_dashboards(PROD)


def panels_by_title(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in document["panels"]}


def queries_of(panel: dict[str, Any]) -> list[tuple[str, str]]:
    return [(target["expr"], target["legendFormat"]) for target in panel["targets"]]


def steps_of(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [(step["value"], step["color"]) for step in steps]


def test_the_overview_comes_first_with_what_an_operator_looks_for() -> None:
    documents = rendered(TUNED)
    assert next(iter(documents)) == "overview.json"
    overview = documents["overview.json"]
    assert overview["uid"] == "stories-overview" and overview["title"] == "1001 Stories: overview"
    assert list(panels_by_title(overview)) == [
        "WAL archive age",
        "Backups: age against the schedule",
        "Scheduled calls: last success against the schedule",
        "PgBouncer pool saturation",
        "Scaler: decisions against the schedule",
    ]


def test_pool_saturation_shows_waiting_clients_and_servers_against_the_pool() -> None:
    panel = panels_by_title(rendered()["overview.json"])["PgBouncer pool saturation"]
    assert panel["type"] == "timeseries"
    assert queries_of(panel) == [
        (
            'sum by (database) (pgbouncer_pools_client_waiting_connections{database!="pgbouncer"})',
            "{{database}}: clients waiting",
        ),
        ('pgbouncer_databases_current_connections{name!="pgbouncer"}', "{{name}}: server connections"),
        ('pgbouncer_databases_pool_size{name!="pgbouncer"}', "{{name}}: pool size"),
        ('pgbouncer_databases_max_connections{name!="pgbouncer"}', "{{name}}: cap (pool + reserve)"),
    ]


def test_wal_archive_age_turns_orange_at_two_switches_and_red_at_the_rpo() -> None:
    panel = panels_by_title(rendered(TUNED)["overview.json"])["WAL archive age"]
    assert panel["type"] == "stat" and panel["fieldConfig"]["defaults"]["unit"] == "s"
    assert queries_of(panel) == [
        ("pg_stat_archiver_last_archive_age", "postgres"),
        ("stories_backup_wal_last_archived_age_seconds", "backup service"),
    ]
    assert steps_of(panel) == [(None, "green"), (60, "orange"), (1200, "red")]


@pytest.mark.parametrize(
    ("title", "last_success", "interval", "legend", "red"),
    [
        (
            "Backups: age against the schedule",
            "stories_backup_last_success_timestamp_seconds",
            "stories_backup_expected_interval_seconds",
            "{{kind}}",
            300,
        ),
        (
            "Scheduled calls: last success against the schedule",
            "stories_cron_last_success_timestamp_seconds",
            "stories_cron_expected_interval_seconds",
            "{{cronjob}}",
            150,
        ),
    ],
)
def test_freshness_is_the_age_against_the_interval_red_where_the_late_alert_fires(
    title: str, last_success: str, interval: str, legend: str, red: float
) -> None:
    panel = panels_by_title(rendered(TUNED)["overview.json"])[title]
    assert panel["type"] == "stat" and panel["fieldConfig"]["defaults"]["unit"] == "percent"
    assert queries_of(panel) == [(f"(time() - {last_success}) / {interval} * 100", legend)]
    assert steps_of(panel) == [(None, "green"), (100, "orange"), (red, "red")]
    assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"]


def test_scaler_decisions_against_the_schedule_floor_and_the_cap() -> None:
    panel = panels_by_title(rendered(TUNED)["overview.json"])["Scaler: decisions against the schedule"]
    assert queries_of(panel) == [
        ("stories_scaler_desired_replicas", "desired"),
        ("stories_scaler_running_replicas", "running"),
        ("stories_scaler_floor_replicas", "schedule floor"),
    ]
    assert steps_of(panel) == [(None, "green"), (7, "red")]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "dashed"}
