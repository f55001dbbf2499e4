"""The operator commands against the running e2e stack, through the docker CLI, as an operator types them:
`make status` (table and JSON), `make db-top`, `make db-maintain`, `make psql` and `make logs`.

What each prints is checked against the engine's own view (docker inspect, Alertmanager's published port),
and no output may contain any of the stack's generated secrets (read from the revealed plan the stack was
applied from: every env value its containers label secret, every 0400 upload).

These run after tests/engine/test_e2e_stack.py on the same stack (file order), which kills Postgres on
purpose: a Postgres restart minutes ago is then a finding that rightly needs a person.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import docker
import pytest

from components.container import LABEL_PREFIX, SECRET_PERMISSIONS
from e2e.stack import STACK, Running, services
from tests.engine.conftest import FIGURES, eventually
from tools.plan import CONTAINER, settings_for

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings_for(STACK)
ALERTMANAGER = f"http://127.0.0.1:{SETTINGS.monitoring.alertmanager_host_port}"
PEM_ARMOR = re.compile(r"^-----(BEGIN|END) ")


def make(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", *arguments, f"STACK={STACK}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stack_secrets(stack: Running) -> set[str]:
    """Every generated secret the stack holds: values of the env names each container labels secret, and
    the lines and long tokens of its 0400 uploads (passwords, SCRAM verifiers, keys, pgpass entries)."""
    found: set[str] = set()
    for resource in stack.resources:
        if resource.type != CONTAINER:
            continue
        inputs = resource.inputs
        labels = {label["label"]: label["value"] for label in inputs.get("labels") or []}
        secret_env = set(labels.get(f"{LABEL_PREFIX}.secret-env", "").split(",")) - {""}
        for entry in inputs.get("envs") or []:
            name, _, value = str(entry).partition("=")
            if name in secret_env and value and not name.endswith("_BUCKET"):  # a bucket's name is no secret
                found.add(value)
        for upload in inputs.get("uploads") or []:
            if upload.get("permissions") != SECRET_PERMISSIONS:
                continue
            for line in str(upload.get("content", "")).splitlines():
                line = line.strip()
                if not line or PEM_ARMOR.match(line):
                    continue
                found.add(line)
                found.update(token for token in re.split(r"[\s:\"$]+", line) if len(token) >= 16)
    short = {secret for secret in found if len(secret) < 8}
    assert not short, "a secret shorter than 8 characters would make this check meaningless"
    assert len(found) >= 10, found
    return found


def assert_no_secret(output: str, secrets: set[str], what: str) -> None:
    leaked = sorted(secret[:6] + "..." for secret in secrets if secret in output)
    assert leaked == [], f"{what} printed secrets starting with {leaked}"


def firing_in_alertmanager() -> set[str]:
    url = f"{ALERTMANAGER}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    with urllib.request.urlopen(url, timeout=10) as response:
        return {alert["labels"]["alertname"] for alert in json.loads(response.read())}


def status_json() -> tuple[int, dict[str, Any]]:
    """The JSON and the exit status of the command `make status` runs (make itself turns any failure of a
    recipe into its own status 2, so the tool's 1, "needs a person", is read from the tool)."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.status", "--stack", STACK, "--format", "json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


# ---------------------------------------------------------------------------------------------------------


def test_status_json_lists_every_service_healthy_and_every_section(stack: Running, engine: docker.DockerClient) -> None:
    names = {str(inputs["name"]).removeprefix(f"{STACK}-") for inputs in services(stack.resources)}

    def all_healthy() -> tuple[int, dict[str, Any]] | None:
        code, document = status_json()
        rows = {row["name"]: row for row in document["containers"] or []}
        healthy = all(
            name in rows and rows[name]["state"] == "running" and rows[name]["health"] in (None, "healthy")
            for name in names
        )
        return (code, document) if healthy else None

    before = firing_in_alertmanager()
    started = time.monotonic()
    code, document = eventually(all_healthy, 120, "make status listing every service running and healthy")
    FIGURES["make status STACK=e2e FORMAT=json (last run, wall time)"] = f"{time.monotonic() - started:.1f} s"
    after = firing_in_alertmanager()

    assert document["stack"] == STACK and document["errors"] == {}, document["errors"]
    rows = {row["name"]: row for row in document["containers"]}
    for name in names:  # the engine's own view agrees
        state = engine.api.inspect_container(f"{STACK}-{name}")
        assert rows[name]["restarts"] == state["RestartCount"], name
        assert rows[name]["memory_limit_bytes"] == state["HostConfig"]["Memory"], name
        assert rows[name]["memory_bytes"] and rows[name]["memory_bytes"] < state["HostConfig"]["Memory"], name
    assert not any(name.endswith("-config") for name in rows)  # config containers are not services

    pools = {(pool["database"], pool["user"]) for pool in document["pgbouncer"]["pools"]}
    assert (SETTINGS.database.name, SETTINGS.database.user) in pools
    postgres = document["postgres"]
    assert postgres["database"] == SETTINGS.database.name and postgres["archive_mode"] == "on"
    # (no count of archived segments: the crash recovery test_e2e_stack causes resets the statistics)
    assert postgres["total_connections"] >= 1 and not postgres["archive_failing"]
    assert document["redis"]["maxmemory"] == SETTINGS.redis.maxmemory_mb * 1024 * 1024
    kinds = {kind["kind"]: kind for kind in document["backups"]["kinds"]}
    assert kinds["postgres full"]["last_success"] and kinds["files"]["last_success"] and kinds["redis"]["last_success"]
    assert {alert["name"] for alert in document["alerts"]} <= before | after

    # Every finding that needs a person is one the engine or Alertmanager confirms, and the exit status says so.
    crit = [finding for finding in document["findings"] if finding["level"] == "crit"]
    for finding in crit:
        if finding["section"] == "alerts":
            assert finding["subject"] in before | after, finding
        else:
            assert finding["section"] == "containers", finding
            state = engine.api.inspect_container(f"{STACK}-{finding['subject']}")
            assert state["RestartCount"] > 0 or state["State"]["Status"] != "running", finding
    assert document["needs_a_person"] is bool(crit) and code == (1 if crit else 0)


def test_status_table_is_plain_when_piped_and_prints_no_secret(stack: Running) -> None:
    result = make("status")
    assert result.returncode in (0, 2), result.stderr  # 2: make's own status when the tool's is not 0
    text = result.stdout
    assert "\x1b[" not in text  # not a terminal: no colour
    for heading in ("Containers", "PgBouncer pools", "Postgres", "Redis", "Backups", "Alerts firing"):
        assert heading in text
    assert f"{SETTINGS.database.name}/{SETTINGS.database.user}" in text
    assert "could not be read" not in text
    secrets = stack_secrets(stack)
    assert_no_secret(text, secrets, "make status")
    assert_no_secret(make("status", "FORMAT=json").stdout, secrets, "make status FORMAT=json")


def test_db_top_shows_the_apps_statements(stack: Running) -> None:
    result = make("db-top", "N=5")
    assert result.returncode == 0, result.stderr
    assert "Slowest (by mean time)" in result.stdout and "Most frequent (by calls)" in result.stdout
    document = json.loads(make("db-top", "N=5", "FORMAT=json").stdout)
    assert document["database"] == SETTINGS.database.name and document["statements"] > 0
    assert 0 < len(document["frequent"]) <= 5
    assert all(statement["role"] != "stories_monitor" for statement in document["frequent"] + document["slowest"])
    secrets = stack_secrets(stack)
    assert_no_secret(result.stdout, secrets, "make db-top")


def test_db_maintain_runs_as_the_app_and_fails_on_nothing(stack: Running) -> None:
    result = make("db-maintain", "FORMAT=json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["database"] == SETTINGS.database.name and report["user"] == SETTINGS.database.user
    assert report["tables"], "the app's tables"
    assert all(not table["result"].startswith(("failed", "not done")) for table in report["tables"]), report
    table = make("db-maintain")
    assert table.returncode == 0 and f"db-maintain {SETTINGS.database.name} as {SETTINGS.database.user}" in table.stdout
    secrets = stack_secrets(stack)
    assert_no_secret(result.stdout + table.stdout, secrets, "make db-maintain")


def test_psql_as_the_monitor_and_as_the_app(stack: Running) -> None:
    monitor = make("psql", "SQL=SELECT current_user")
    assert monitor.returncode == 0 and "stories_monitor" in monitor.stdout.split(), monitor.stdout + monitor.stderr
    # The app's role over TLS to the server's own address on the data network, verified against the stack's CA.
    app = make("psql", "ROLE=app", "SQL=SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert app.returncode == 0, app.stdout + app.stderr
    assert SETTINGS.database.user in app.stdout and re.search(r"\|\s*t\s*$", app.stdout, re.MULTILINE), app.stdout
    refused = make("psql", "SQL=SELECT count(*) FROM pg_authid")
    assert refused.returncode != 0 and "permission denied" in refused.stderr
    assert_no_secret(monitor.stdout + app.stdout + refused.stderr, stack_secrets(stack), "make psql")


def test_logs_of_a_service_and_a_clear_refusal(stack: Running) -> None:
    result = make("logs", "SERVICE=postgres", "N=30")
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert 0 < len(lines) <= 30 and all(re.match(r"^\d{4}-\d\d-\d\dT", line) for line in lines)
    assert_no_secret(result.stdout + result.stderr, stack_secrets(stack), "make logs")
    wrong = make("logs", "SERVICE=nope")
    assert wrong.returncode == 2
    assert f"SERVICE = 'nope': no container {STACK}-nope; known: " in wrong.stderr and "postgres" in wrong.stderr
    assert "Traceback" not in wrong.stderr
