"""The whole platform on the real Docker engine: the e2e stack's plan applied as the provider applies it,
from images built here, with stand-ins for S3 and the ACME server, and checked as a whole.

The checks run in file order on one stack (the `stack` fixture of conftest.py: created once for the run,
removed at its end, also after a failure); the ones that break something on purpose (Postgres killed, a
replica stopped) come last.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import urllib3
from docker.models.containers import Container

from configs import monitoring
from e2e.stack import ACME_STANDIN, PEBBLE_MANAGEMENT_PORT, STACK, Running, container_name, services
from tests.engine.conftest import eventually, started_by_the_scaler
from tools.plan import CONTAINER, settings_for

pytestmark = pytest.mark.engine
SETTINGS = settings_for(STACK)
DOMAIN = SETTINGS.domain
HTTPS = SETTINGS.proxy.https_host_port
HTTP = SETTINGS.proxy.http_host_port
PROMETHEUS = f"http://127.0.0.1:{SETTINGS.monitoring.prometheus_host_port}"
AUTHENTICATION_FAILURES = ("password authentication failed", "no pg_hba.conf entry", "authentication failed")


def container(engine: docker.DockerClient, service: str) -> Container:
    return engine.containers.get(container_name(engine, service))


def run_in(engine: docker.DockerClient, service: str, command: list[str]) -> tuple[int, str]:
    return exec_in(container(engine, service), command)


def exec_in(target: Container, command: list[str]) -> tuple[int, str]:
    result = target.exec_run(command)
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else ""
    return int(result.exit_code or 0), output


def pebble_root(engine: docker.DockerClient) -> str:
    """The root of the certificates pebble issues (new at every pebble start), from its management API."""
    script = (
        "import ssl, urllib.request; "
        f"print(urllib.request.urlopen('https://127.0.0.1:{PEBBLE_MANAGEMENT_PORT}/roots/0', "
        "context=ssl._create_unverified_context()).read().decode())"
    )
    code, output = exec_in(engine.containers.get(ACME_STANDIN), ["python3", "-c", script])
    assert code == 0, output
    return output


def site(path: str, ca_file: Path | None = None) -> urllib3.BaseHTTPResponse:
    """GET https://<domain><path> through nginx's published port, with SNI and Host of the domain;
    the certificate is verified against `ca_file` when given."""
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        HTTPS,
        server_hostname=DOMAIN,
        assert_hostname=DOMAIN if ca_file else False,
        cert_reqs="CERT_REQUIRED" if ca_file else "CERT_NONE",
        ca_certs=str(ca_file) if ca_file else None,
        timeout=10,
        retries=False,
    )
    with pool:
        return pool.request("GET", path, headers={"Host": DOMAIN})


def served_certificate() -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return ssl.get_server_certificate(("127.0.0.1", HTTPS))


# ---------------------------------------------------------------------------------------------------


def test_every_service_runs_and_is_healthy(stack: Running, engine: docker.DockerClient) -> None:
    names = [str(inputs["name"]) for inputs in services(stack.resources)]
    for name in names:
        state = engine.api.inspect_container(name)["State"]
        assert state["Status"] == "running", name
        assert (state.get("Health") or {"Status": "healthy"})["Status"] == "healthy", name
    for resource in stack.resources:
        if resource.type == CONTAINER and resource.inputs.get("start") is False:
            # config containers and the replica above the floor: created, never started (but by the scaler)
            container = engine.containers.get(str(resource.inputs["name"]))
            assert container.status == "created" or started_by_the_scaler(engine, container), container.name


def test_https_reaches_the_app_and_through_it_postgres_and_redis(stack: Running) -> None:
    response = site(SETTINGS.app.health_path)
    assert response.status == 200, response.data
    body = json.loads(response.data)
    assert body["checks"] == {"env": "ok", "database": "ok", "redis": "ok", "uploads": "ok"}, body
    redirect = requests.get(f"http://127.0.0.1:{HTTP}/", headers={"Host": DOMAIN}, allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith(f"https://{DOMAIN}")


def test_nginx_serves_the_certificate_the_acme_server_issued_and_its_renewal(
    stack: Running, engine: docker.DockerClient, tmp_path: Path
) -> None:
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble_root(engine))
    first = eventually(lambda: site("/", root), 90, "a certificate issued by pebble, served by nginx")
    assert first.status in (200, 404)
    issued = served_certificate()
    code, output = run_in(
        engine, "certbot", ["certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew", "--non-interactive"]
    )
    assert code == 0, output
    renewed = eventually(lambda: (c := served_certificate()) != issued and c, 30, "the renewed certificate served")
    assert renewed != issued and site("/", root).status in (200, 404)


def test_plaintext_to_pgbouncer_is_refused(stack: Running, engine: docker.DockerClient) -> None:
    probe = (
        "import psycopg, sys\n"
        "try:\n"
        "    psycopg.connect('host=pgbouncer port=6432 dbname=stories_db user=stories_user sslmode=disable', "
        "connect_timeout=5)\n"
        "except psycopg.OperationalError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    code, output = run_in(engine, "app-1", ["python3", "-c", probe])
    assert code == 3, output
    assert "SSL" in output or "ssl" in output, output


def psql(engine: docker.DockerClient, sql: str) -> str:
    code, output = run_in(
        engine,
        "postgres",
        ["psql", "-X", "-h", "/var/run/postgresql", "-U", "postgres", "-d", SETTINGS.database.name, "-tAc", sql],
    )
    assert code == 0, output
    return output.strip()


def test_wal_is_archived_to_s3_from_the_postgres_container(stack: Running, engine: docker.DockerClient) -> None:
    psql(
        engine,
        "CREATE TABLE IF NOT EXISTS e2e_archive_probe (at timestamptz); INSERT INTO e2e_archive_probe VALUES (now())",
    )
    psql(engine, "SELECT pg_switch_wal()")
    archived = eventually(
        lambda: int(psql(engine, "SELECT archived_count FROM pg_stat_archiver")) > 0, 90, "a WAL segment archived"
    )
    assert archived
    # Attempts before the backup service created the stanza fail; what counts is that archiving works now.
    recovered = "SELECT last_archived_time > coalesce(last_failed_time, '-infinity') FROM pg_stat_archiver"
    assert psql(engine, recovered) == "t"


def stories_backup(engine: docker.DockerClient, *arguments: str) -> str:
    code, output = run_in(engine, "backup", ["stories-backup", *arguments])
    assert code == 0, output
    return output


def backup_status(engine: docker.DockerClient) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(stories_backup(engine, "status"))
    return status


def test_backups_and_the_restore_drill_run_green_in_the_backup_container(
    stack: Running, engine: docker.DockerClient
) -> None:
    """The service takes the first full backup and snapshots by itself when it starts; then the operator's
    commands run green beside it: an incremental backup, the files and Redis jobs, the drill, verify."""
    eventually(
        lambda: {"full", "files", "redis"} <= set(backup_status(engine)["last_success"]),
        180,
        "the service's first full backup and snapshots",
        interval=5,
    )
    stories_backup(engine, "backup", "postgres", "--type", "incr")
    stories_backup(engine, "backup", "files")
    stories_backup(engine, "backup", "redis")
    assert "drill passed" in stories_backup(engine, "drill")
    stories_backup(engine, "verify")
    status = backup_status(engine)
    assert {"full", "incr", "files", "redis"} <= set(status["last_success"]), status
    assert status["wal_archive_failing"] is False


def test_the_scaler_starts_a_replica_on_load_and_stops_it_again(stack: Running, engine: docker.DockerClient) -> None:
    third = container_name(engine, f"app-{SETTINGS.app.max_replicas}")
    sessions = SETTINGS.scaling.load.sessions_per_replica * SETTINGS.app.max_replicas
    opened = site_post(f"/api/sessions?seconds=40&count={sessions}")
    assert opened == 200
    eventually(lambda: engine.api.inspect_container(third)["State"]["Running"], 120, "replica 3 started", interval=2)
    eventually(
        lambda: not engine.api.inspect_container(third)["State"]["Running"], 240, "replica 3 stopped", interval=3
    )


def site_post(path: str) -> int:
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", HTTPS, server_hostname=DOMAIN, cert_reqs="CERT_NONE", timeout=10)
    with pool:
        return int(pool.request("POST", path, headers={"Host": DOMAIN}).status)


def test_prometheus_scrapes_every_target_and_no_alert_fires(stack: Running) -> None:
    expected = {"prometheus", "node", "postgres", "pgbouncer", "redis", "nginx", "alertmanager", "backup"}
    expected |= {"scaler", "app", "blackbox-app"}

    def all_up() -> dict[str, list[str]] | None:
        targets = requests.get(f"{PROMETHEUS}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        jobs: dict[str, list[str]] = {}
        for target in targets:
            jobs.setdefault(target["labels"]["job"], []).append(target["health"])
        ready = set(jobs) >= expected and all(health == ["up"] * len(health) for health in jobs.values())
        # The running replicas, found by DNS: replica 3, which the scaler stopped again, drops out.
        return jobs if ready and len(jobs["app"]) == len(jobs["blackbox-app"]) == SETTINGS.app.replicas else None

    eventually(all_up, 120, "every target up, each running replica once", interval=3)
    groups = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert loaded == {rule.name for rule in monitoring.alert_rules(SETTINGS)}

    def firing() -> list[dict[str, str]]:
        alerts = requests.get(f"{PROMETHEUS}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [alert["labels"] for alert in alerts if alert["state"] == "firing"]

    # Steady state: the exporters' failed attempts while the stack started (Postgres not up yet) count
    # in 5-minute windows; once they have aged out, nothing fires.
    eventually(lambda: firing() == [], 300, "no alert firing", interval=10)


def test_pgbouncer_serves_again_after_postgres_is_killed(stack: Running, engine: docker.DockerClient) -> None:
    """A crash (SIGKILL to the postmaster from outside, as the OOM killer would): Docker restarts Postgres
    (restart unless-stopped; `docker kill` would count as a manual stop) and PgBouncer reconnects."""
    pgbouncer_started = engine.api.inspect_container(f"{STACK}-pgbouncer")["State"]["StartedAt"]
    os.kill(engine.api.inspect_container(f"{STACK}-postgres")["State"]["Pid"], signal.SIGKILL)
    eventually(lambda: site(SETTINGS.app.health_path).status == 200, 120, "the app healthy again", interval=2)
    assert engine.api.inspect_container(f"{STACK}-pgbouncer")["State"]["StartedAt"] == pgbouncer_started


def test_nginx_keeps_answering_with_one_replica_stopped(stack: Running, engine: docker.DockerClient) -> None:
    second = container(engine, "app-2")
    second.stop(timeout=30)
    try:
        statuses = [site(SETTINGS.app.health_path).status for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        second.start()


def test_no_container_restarted_and_no_authentication_failure_logged(
    stack: Running, engine: docker.DockerClient
) -> None:
    restarted = {}
    for inputs in services(stack.resources):
        state = engine.api.inspect_container(inputs["name"])
        if state["RestartCount"] and inputs["name"] != f"{STACK}-postgres":  # killed on purpose above
            restarted[inputs["name"]] = state["RestartCount"]
    assert restarted == {}
    failures = []
    for inputs in services(stack.resources):
        log = engine.containers.get(inputs["name"]).logs().decode(errors="replace")
        failures += [
            f"{inputs['name']}: {line}"
            for line in log.splitlines()
            if "FATAL" in line and any(failure in line for failure in AUTHENTICATION_FAILURES)
        ]
    assert failures == []
