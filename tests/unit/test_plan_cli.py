"""`make plan`: its formats, its output folder, and its answer to bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tools.plan import main


def test_json_lists_every_resource_with_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "prod", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == "prod"
    assert {"type", "name", "parent", "inputs"} == set(document["resources"][0])
    types = {resource["type"] for resource in document["resources"]}
    assert {"docker:index/container:Container", "aws:s3/bucket:Bucket", "docker:index/network:Network"} <= types
    assert document["outputs"]["url"] == "https://stories.example.org"


def test_table_groups_containers_by_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "dev"]) == 0
    table = capsys.readouterr().out
    for component in ("[app]", "[database]", "[pooler]", "[cache]", "[proxy]", "[monitoring]"):
        assert component in table
    nginx_line = next(line for line in table.splitlines() if "dev-nginx " in line)
    assert "0.0.0.0:80->8080" in nginx_line and "0.0.0.0:443->8443" in nginx_line
    assert "256M/64M" in nginx_line


def test_out_receives_every_rendered_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "prod", "--format", "json", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    written = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()}
    expected = {
        "postgres/postgresql.conf",
        "postgres/pg_hba.conf",
        "postgres/init.sql",
        "pgbouncer/pgbouncer.ini",
        "redis/redis.conf",
        "nginx/nginx.conf",
        "nginx/start.sh",
        "prometheus/prometheus.yml",
        "prometheus/rules/alerts.yml",
        "prometheus/rules/recording.yml",
        "alertmanager/alertmanager.yml",
        "blackbox-exporter/blackbox.yml",
        "grafana/dashboards/infrastructure.json",
    }
    assert expected <= written
    assert yaml.safe_load((tmp_path / "prometheus/prometheus.yml").read_text())["scrape_configs"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "qa"], "STACK = 'qa': no Pulumi.qa.yaml; known stacks: dev, e2e, prod, staging"),
        (["--format", "xml"], "FORMAT = 'xml': must be table or json"),
    ],
)
def test_bad_arguments_get_one_clear_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == message
    assert captured.out == ""
