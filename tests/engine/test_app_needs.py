"""What the real app needs from its platform, on the e2e stack (the `stack` fixture of conftest.py): the
schema migration ran, straight to Postgres, before any replica started; a file written through one replica
into a data directory is served by nginx and read by the other replica, and survives a redeploy of the
replicas and a restore from the backups; every cron route was called with the stack's CRON_SECRET, and
Prometheus scrapes the calls' metrics.

The stand-in app (e2e/images/app) does what the real one does here: `migrate` creates its tables (and
pgcrypto), it writes into each data directory, and its cron routes check the bearer. The checks run in file
order; the redeploy comes last and leaves the stack as it found it (replicas healthy, nginx reloaded, the
scaler running), for the modules after this one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import pytest
import requests
import urllib3

from e2e.applier import apply
from e2e.stack import STACK, Running, container_env, container_name, wait_until_healthy
from tests.engine.conftest import eventually
from tools.plan import CONTAINER, PlannedResource, settings_for

pytestmark = pytest.mark.engine
SETTINGS = settings_for(STACK)
DOMAIN = SETTINGS.domain
HTTPS = SETTINGS.proxy.https_host_port
PROMETHEUS = f"http://127.0.0.1:{SETTINGS.monitoring.prometheus_host_port}"
CRON_PATHS = {job.path for job in SETTINGS.cron.jobs}
NGINX_CONF = "/etc/stories/nginx/nginx.conf"
RESTORE_ROOT = "/var/lib/stories-backup"  # the backup container's work volume, where `restore --into` may write
PROBE = f"cover-{secrets.token_hex(4)}.png"
CONTENT = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(4096)


def run_in(engine: docker.DockerClient, service: str, command: list[str]) -> str:
    result = engine.containers.get(container_name(engine, service)).exec_run(command)
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else ""
    assert result.exit_code == 0, f"{service}: {command[:3]} exited {result.exit_code}:\n{output}"
    return output


def instant(text: str) -> datetime:
    """A Docker timestamp (RFC 3339, up to nine decimals, trailing zeros dropped) as a datetime."""
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=UTC) + timedelta(microseconds=int((fraction + "0" * 6)[:6]))


def state(engine: docker.DockerClient, service: str) -> dict[str, Any]:
    found: dict[str, Any] = engine.api.inspect_container(container_name(engine, service))["State"]
    return found


def psql(engine: docker.DockerClient, sql: str) -> str:
    command = ["psql", "-X", "-h", "/var/run/postgresql", "-U", "postgres", "-d", SETTINGS.database.name, "-tAc", sql]
    return run_in(engine, "postgres", command).strip()


def site(method: str, path: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    """`method` https://<domain><path> through nginx's published port (the certificate is not checked here:
    test_e2e_stack.py checks it)."""
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1", HTTPS, server_hostname=DOMAIN, assert_hostname=False, cert_reqs="CERT_NONE", timeout=10
    )
    with pool:
        return pool.request(method, path, headers={"Host": DOMAIN, **(headers or {})}, retries=False)


def in_replica(engine: docker.DockerClient, replica: str, method: str, path: str, data: bytes = b"") -> bytes:
    """A request to one replica itself (from inside its container), whatever nginx would choose."""
    script = (
        "import sys, urllib.request\n"
        "request = urllib.request.Request('http://127.0.0.1:3000' + sys.argv[1], method=sys.argv[2],"
        " data=bytes.fromhex(sys.argv[3]) if sys.argv[3] else None)\n"
        "print(urllib.request.urlopen(request, timeout=10).read().hex())\n"
    )
    return bytes.fromhex(run_in(engine, replica, ["python3", "-c", script, path, method, data.hex()]).strip())


# ---------------------------------------------------------------------------------------------------
# The migration


def test_the_migration_exited_0_before_any_replica_started(stack: Running, engine: docker.DockerClient) -> None:
    for one_shot in ("app-volumes", "app-migration"):
        ended = state(engine, one_shot)
        assert (ended["Status"], ended["ExitCode"]) == ("exited", 0), (one_shot, ended)
        for replica in ("app-1", "app-2"):
            started = instant(state(engine, replica)["StartedAt"])
            assert instant(ended["FinishedAt"]) < started, f"{one_shot} finished after {replica} started"
    assert state(engine, f"app-{SETTINGS.app.max_replicas}")["Status"] == "created"  # the scaler's, never started
    log = engine.containers.get(container_name(engine, "app-migration")).logs().decode(errors="replace")
    assert "migrate: applied 0001_standin" in log and "sslmode=verify-full" in log, log
    assert "host=postgres port=5432" in log and "pgbouncer" not in log.lower(), "straight to Postgres"
    networks = engine.api.inspect_container(container_name(engine, "app-migration"))["NetworkSettings"]["Networks"]
    assert set(networks) == {container_name(engine, "data")}
    runs = psql(engine, "SELECT count(*), min(applied_by) FROM standin_migrations WHERE name = '0001_standin'")
    assert runs.split("|") == ["1", "app-migration"], runs
    assert psql(engine, "SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'") == "pgcrypto"
    owner = psql(engine, "SELECT tableowner FROM pg_tables WHERE tablename = 'standin_migrations'")
    assert owner == SETTINGS.database.user, "created by the app's role, not a superuser"


# ---------------------------------------------------------------------------------------------------
# The data directories


def test_a_cover_written_through_one_replica_is_served_by_nginx_and_read_by_the_other(
    stack: Running, engine: docker.DockerClient
) -> None:
    answer = json.loads(in_replica(engine, "app-1", "POST", f"/api/files/covers/{PROBE}", CONTENT))
    assert answer["replica"] == "app-1" and answer["bytes"] == len(CONTENT), answer
    served = site("GET", f"/covers/{PROBE}")
    assert served.status == 200 and served.data == CONTENT
    assert served.headers["Cache-Control"] == f"public, max-age={SETTINGS.proxy.static_cache_days * 86400}"
    assert served.headers["Content-Type"] == "image/png" and "X-Stories-Replica" not in served.headers, "not the app"
    assert in_replica(engine, "app-2", "GET", f"/api/files/covers/{PROBE}") == CONTENT
    # Every data directory: written through one replica, read through the other (under a name of its
    # own: the cover above is what the restore and redeploy tests look for).
    other = f"other-{PROBE}"
    for each in SETTINGS.app.data_dirs:
        content = secrets.token_bytes(512)
        in_replica(engine, "app-2", "POST", f"/api/files/{each.name}/{other}", content)
        assert in_replica(engine, "app-1", "GET", f"/api/files/{each.name}/{other}") == content, each.name
        if each.url_path:
            assert site("GET", f"{each.url_path}{other}").data == content, each.name
    private = site("GET", f"/exports/{other}")  # not served from its volume: the app answers (404 here)
    assert private.status == 404 and private.headers.get("X-Stories-Replica"), private.data


# ---------------------------------------------------------------------------------------------------
# The scheduled calls


def json_line(line: str) -> dict[str, Any]:
    """One of the cron service's JSON log lines ({} for any other line)."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def cron_calls() -> dict[str, dict[str, int]] | None:
    """The calls the stand-in recorded (in its database, whichever replica took them), once each route has
    one authorized call."""
    response = site("GET", "/api/cron/calls")
    calls: dict[str, dict[str, int]] = json.loads(response.data)["calls"]
    return calls if all(calls.get(path, {}).get("authorized", 0) >= 1 for path in CRON_PATHS) else None


def test_each_cron_route_is_called_with_the_stacks_secret(stack: Running, engine: docker.DockerClient) -> None:
    calls = eventually(cron_calls, 100, "an authorized call of every cron route", interval=5)
    assert {path: calls[path]["unauthorized"] for path in CRON_PATHS} == dict.fromkeys(CRON_PATHS, 0), calls
    secret = container_env(stack.resources, container_name(engine, "cron"))["CRON_SECRET"]
    assert (
        container_env(stack.resources, container_name(engine, "app-1"))["CRON_SECRET"] == secret and len(secret) == 48
    )
    lines = [
        json_line(line) for line in engine.containers.get(container_name(engine, "cron")).logs().decode().splitlines()
    ]
    done = {line["cronjob"] for line in lines if line.get("code") == "200" and line.get("success")}
    assert done == {job.name for job in SETTINGS.cron.jobs}, lines[-10:]
    for service in ("cron", "app-1", "app-2"):
        assert secret not in engine.containers.get(container_name(engine, service)).logs().decode(errors="replace"), (
            service
        )
    # Without the bearer the route refuses (through nginx, from outside) and the refusal is counted.
    path = "/api/cron/hard-delete"
    assert site("GET", path).status == 401
    assert site("GET", path, {"Authorization": "Bearer not-the-secret"}).status == 401
    after = json.loads(site("GET", "/api/cron/calls").data)["calls"][path]
    assert after["unauthorized"] == 2, after


def query(expr: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10).json()
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_the_calls_metrics_and_no_cron_alert_fires(stack: Running) -> None:
    jobs = {job.name for job in SETTINGS.cron.jobs}

    def scraped() -> bool:
        succeeded = {r["metric"]["cronjob"] for r in query("stories_cron_last_run_success == 1")}
        return succeeded == jobs

    eventually(scraped, 90, "every job's last call a success, in Prometheus", interval=5)
    intervals = {r["metric"]["cronjob"]: float(r["value"][1]) for r in query("stories_cron_expected_interval_seconds")}
    assert intervals == dict.fromkeys(jobs, 60.0)  # every minute in the e2e stack
    ages = query("time() - stories_cron_last_success_timestamp_seconds")
    assert len(ages) == len(jobs) and all(float(r["value"][1]) < 130 for r in ages), ages
    assert {r["metric"]["cronjob"] for r in query('stories_cron_calls_total{code="200"} > 0')} == jobs
    (target,) = [r for r in query('up{job="cron"}')]
    assert target["value"][1] == "1"
    rules = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"CronCallFailed", "CronCallLate"} <= set(loaded)
    assert all(loaded[alert]["state"] == "inactive" for alert in ("CronCallFailed", "CronCallLate")), loaded


# ---------------------------------------------------------------------------------------------------
# A restore, then a redeploy


def test_the_cover_comes_back_from_a_restore(stack: Running, engine: docker.DockerClient) -> None:
    def status() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(run_in(engine, "backup", ["stories-backup", "status"]))
        return found

    # The backup service takes its first full backup by itself: `restore --into` needs one.
    eventually(lambda: "full" in status()["last_success"], 240, "the service's first full backup", interval=5)
    run_in(engine, "backup", ["stories-backup", "backup", "files"])
    target = f"{RESTORE_ROOT}/restore-{secrets.token_hex(4)}"
    try:
        run_in(engine, "backup", ["stories-backup", "restore", "--into", target])
        restored = f"{target}/files/backup-sources/covers/{PROBE}"
        digest = run_in(engine, "backup", ["sha256sum", restored]).split()[0]
        assert digest == hashlib.sha256(CONTENT).hexdigest()
        kept = run_in(engine, "backup", ["ls", f"{target}/files/backup-sources"]).split()
        backed_up = sorted(each.name for each in SETTINGS.app.data_dirs if each.backup)
        assert sorted(set(kept) - {"letsencrypt"}) == backed_up and "exports" not in kept, kept
    finally:
        run_in(engine, "backup", ["rm", "-rf", target])


def replica_resources(stack: Running) -> list[PlannedResource]:
    """The app image and the replicas (not their config containers) of the plan, in its order."""
    image = [r for r in stack.resources if r.type.endswith("remoteImage:RemoteImage") and r.name == "app-image"]
    replicas = [
        r
        for r in stack.resources
        if r.type == CONTAINER
        and any(item["label"] == "org.1001stories.replica" for item in r.inputs.get("labels", []))
    ]
    assert image and len(replicas) == SETTINGS.app.max_replicas
    return [*image, *replicas]


def test_the_cover_survives_a_redeploy_of_the_replicas(stack: Running, engine: docker.DockerClient) -> None:
    """Every replica removed and created again as the provider creates it (a new app image does that): the
    volumes stay, so the cover is still there, for nginx and for the new replicas."""
    planned = replica_resources(stack)
    names = [str(r.inputs["name"]) for r in planned if r.type == CONTAINER]
    before = {n: engine.api.inspect_container(n)["Id"] for n in names}
    # The scaler would start the stopped replica while the others are away: it waits for the redeploy.
    engine.api.stop(container_name(engine, "scaler"), timeout=15)
    try:
        for each in names:
            engine.api.remove_container(each, force=True)
        apply(engine, planned, log=lambda line: None)
        eventually(lambda: in_replica(engine, "app-1", "GET", f"/api/files/covers/{PROBE}"), 60, "app-1 answers")
    finally:
        engine.api.start(container_name(engine, "scaler"))
    assert all(engine.api.inspect_container(n)["Id"] != before[n] for n in names), "new containers"
    assert state(engine, f"app-{SETTINGS.app.max_replicas}")["Status"] == "created"
    # nginx 1.22 (the e2e stand-in) resolves its upstream when it starts or reloads: the replicas' new addresses.
    run_in(engine, "nginx", ["nginx", "-c", NGINX_CONF, "-s", "reload"])
    assert in_replica(engine, "app-1", "GET", f"/api/files/covers/{PROBE}") == CONTENT
    assert in_replica(engine, "app-2", "GET", f"/api/files/covers/{PROBE}") == CONTENT
    eventually(lambda: site("GET", f"/covers/{PROBE}").data == CONTENT, 30, "nginx serves the cover")
    eventually(lambda: site("GET", SETTINGS.app.health_path).status == 200, 60, "nginx reaches the new replicas")
    wait_until_healthy(
        engine,
        [container_name(engine, "app-1"), container_name(engine, "app-2"), container_name(engine, "scaler")],
        120,
    )
