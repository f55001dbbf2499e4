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

ROOT = Path(__file__).resolve().parents[2]


def rendered() -> dict[str, dict[str, Any]]:
    return {name: json.loads(content) for name, content in dashboards.render_dashboards().items()}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every query of every rendered panel."""
    return [
        (f"{name}: {panel['title']}", target["expr"])
        for name, dashboard in rendered().items()
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_every_query_names_only_metrics_the_stack_provides() -> None:
    queries = dashboard_queries()
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


def test_grafanas_model_reads_back_everything_the_files_say() -> None:
    """Decoded with the SDK's model (what Grafana's schema for this version knows), written again: no key of
    ours is dropped as unknown, every panel is a panel and every query a Prometheus query."""
    register_default_plugins()
    for name, document in rendered().items():
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
    script = "import json, configs.dashboards as d; print(json.dumps(d.render_dashboards()))"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout) == dashboards.render_dashboards()
