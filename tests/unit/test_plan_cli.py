"""`make plan`: its formats, its output folder, and its answer to bad arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import plan_of
from tools.bench_plan import ROOT, commands, loaded_library_modules, report
from tools.plan import main


def test_json_lists_every_resource_with_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "prod", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == "prod"
    assert list(document) == ["stack", "resources", "outputs", "budget"]
    assert {"type", "name", "parent", "inputs"} == set(document["resources"][0])
    types = {resource["type"] for resource in document["resources"]}
    assert {"docker:index/container:Container", "aws:s3/bucket:Bucket", "docker:index/network:Network"} <= types
    assert document["outputs"]["url"] == "https://stories.example.org"
    assert document["budget"] == plan_of("prod").budget  # its numbers: tests/unit/test_budget.py


def test_table_groups_containers_by_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "dev"]) == 0
    table = capsys.readouterr().out
    for component in ("[app]", "[database]", "[pooler]", "[cache]", "[proxy]", "[monitoring]"):
        assert component in table
    nginx_line = next(line for line in table.splitlines() if "dev-nginx " in line)
    assert "0.0.0.0:80->8080" in nginx_line and "0.0.0.0:443->8443" in nginx_line
    assert "256M/64M" in nginx_line
    *_, heading, _, reservations, _, _ = table.rstrip("\n").splitlines()  # the budget ends it
    assert heading.startswith("Host budget: ")
    assert f" {plan_of('dev').budget['memoryReservationMb']['used']:g} MB " in reservations


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
        (["--stack", "qa"], "STACK = 'qa': no Pulumi.qa.yaml; known stacks: dev, e2e, k8s, prod, staging"),
        (["--format", "xml"], "FORMAT = 'xml': must be table or json"),
    ],
)
def test_bad_arguments_get_one_clear_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == message
    assert captured.out == ""


def test_bench_plan_reports_the_ratio_of_the_medians() -> None:
    plan, libraries = commands("prod", ["pulumi", "pulumi_aws.s3"], python="python")
    assert plan.command == ["python", "-m", "tools.plan", "--stack", "prod", "--format", "json"]
    assert libraries.command == ["python", "-c", "import pulumi, pulumi_aws.s3"]
    plan.wall, plan.cpu = [0.9, 0.6, 5.0], [0.5, 0.55, 0.6]
    libraries.wall, libraries.cpu = [0.4, 0.3, 0.5], [0.3, 0.35, 0.25]
    lines = report(plan, libraries)
    assert lines[1] == "libraries: python -c 'import ...' of the 2 installed modules the plan loads"
    assert "wall  plan 0.900 s  libraries 0.400 s  ratio 2.25" in lines[3]
    assert "cpu   plan 0.550 s  libraries 0.300 s  ratio 1.83" in lines[4]
    assert lines[-1] == "ratio 2.25: above the target of 1.5"


def test_bench_plan_baseline_is_what_a_docker_plan_loads_from_the_installed_packages() -> None:
    """Lazily loaded library modules count as the libraries'; a Docker stack loads no Kubernetes provider."""
    modules = loaded_library_modules("prod", {**os.environ, "PYTHONPATH": str(ROOT)})
    packages = {name.split(".")[0] for name in modules}
    assert {"pulumi_aws.s3", "pulumi_aws.iam", "pydantic.main", "pulumi_docker"} <= set(modules)
    assert "pulumi_kubernetes" not in packages
    assert not packages & {"tools", "components", "configs", "model", "scaler"}
