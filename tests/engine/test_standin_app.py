"""The stand-in app image (e2e/images/app) on the real Docker engine, against the real PgBouncer, Postgres
and Redis from Debian's packages on loopback.

The container runs as the plan runs the app (uid 1001, read-only root with the plan's tmpfs, every
capability dropped, no-new-privileges, the plan's healthcheck, a named volume on each data directory,
given its owner first as the plan's volume-owner one-shot does), with host networking so that it reaches
the servers on 127.0.0.1 and nothing else of ours. DATABASE_URL and REDIS_URL are built by components/app.py
exactly as the stack builds them, with the stack's CA file at the path the URL names; the schema migration
(`standin_app.py migrate`) runs first, as the plan's migration does, straight to Postgres.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import docker
import docker.errors
import psycopg
import pytest
from docker.models.containers import Container
from docker.models.images import Image
from prometheus_client.parser import text_string_to_metric_families

from components.app import (
    APP_CONFIG_DIR,
    MIGRATION_CONFIG_DIR,
    VOLUMES_ROOT,
    database_url,
    migration_database_url,
    redis_url,
)
from configs import healthchecks
from configs.metrics import METRICS
from e2e.images import build_service_image
from harness import services
from harness.servers import free_port, make_certificates
from harness.services import Environment, PgBouncer
from model.images import IMAGE_DIRECTORIES
from model.settings import Settings
from tools.plan import settings_for

pytestmark = pytest.mark.engine

STACK = "e2e"
CA_IN_CONTAINER = f"{APP_CONFIG_DIR}/database-ca.crt"
MIGRATION_CA_IN_CONTAINER = f"{MIGRATION_CONFIG_DIR}/database-ca.crt"
MIGRATE = ["python3", "/app/standin_app.py", "migrate"]
RUN_ID = secrets.token_hex(4)
LABEL = "stories-e2e-test"
APP_UID = 1001

P = ParamSpec("P")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------------
# The servers and the container


@dataclass
class Servers:
    """The servers on loopback; `pgbouncer` is replaced when a test restarts it."""

    env: Environment
    pgbouncer: PgBouncer


@dataclass
class Standin:
    client: docker.DockerClient
    container: Container
    settings: Settings
    port: int
    secrets: list[str]
    volumes: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(
        self,
        path: str,
        method: str = "GET",
        timeout: float = 20,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), method=method, headers=headers or {}, data=data)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def json(self, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
        status, body = self.request(path, method)
        parsed: dict[str, Any] = json.loads(body)
        return status, parsed

    def exec(self, argv: list[str]) -> tuple[int, str]:
        result = self.container.exec_run(argv)
        output = result.output if isinstance(result.output, bytes) else b""
        code = result.exit_code if result.exit_code is not None else -1
        return int(code), output.decode(errors="replace")

    def logs(self) -> str:
        try:
            return bytes(self.container.logs()).decode(errors="replace")
        except docker.errors.NotFound:
            return "(the container is removed)"

    def wait_until_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status != "running":
                raise AssertionError(f"the stand-in exited:\n{self.logs()}")
            try:
                self.request("/api/replica", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the stand-in did not listen on {self.port} in {timeout}s:\n{self.logs()}")


_STARTED: list[Standin] = []


def shows_logs(test: Callable[P, R]) -> Callable[P, R]:
    """On failure, print the logs of every stand-in this module started (pytest shows them)."""

    @functools.wraps(test)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return test(*args, **kwargs)
        except BaseException:
            for standin in _STARTED:
                print(f"----- logs of {standin.container.name} -----\n{standin.logs()}")
            raise

    return wrapper


def _settings_on_port(port: int) -> Settings:
    settings: Settings = settings_for(STACK)
    return settings.model_copy(update={"app": settings.app.model_copy(update={"port": port})})


def start_standin(
    client: docker.DockerClient,
    image: Image,
    env: Environment,
    ca_file: Path,
    url_suffix: str = "",
    healthcheck: bool = True,
) -> Standin:
    """The image as the plan runs it, on a free loopback port."""
    port = free_port()
    settings = _settings_on_port(port)
    name = f"e2etest-{RUN_ID}-standin-{len(_STARTED) + 1}"
    data = {f"{name}-{each.name}": each.path for each in settings.app.data_dirs}
    volumes = list(data)
    for volume in volumes:
        client.volumes.create(volume, labels={LABEL: RUN_ID})
    own_volumes(client, image, volumes)
    nextauth_secret = secrets.token_urlsafe(32)
    cron_secret = secrets.token_urlsafe(32)
    interval = 1_000_000_000  # 1 s, in nanoseconds as the engine takes it
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        labels={LABEL: RUN_ID},
        network_mode="host",
        user=f"{APP_UID}:{APP_UID}",
        read_only=True,
        tmpfs={
            "/tmp": "rw,noexec,nosuid,size=64m",
            settings.app.tmp_path: "rw,noexec,nosuid,size=64m",
            settings.app.cache_path: "rw,noexec,nosuid,size=64m",
        },
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="256m",
        environment={
            "NODE_ENV": "production",
            "PORT": str(port),
            "HOSTNAME": "127.0.0.1",
            "NEXTAUTH_URL": settings.public_url,
            "NEXTAUTH_SECRET": nextauth_secret,
            "CRON_SECRET": cron_secret,
            "DATABASE_URL": database_url(settings, env.topo, env.passwords["app"]) + url_suffix,
            "REDIS_URL": redis_url(env.topo, env.passwords["redis_app"]),
        },
        volumes={
            **{volume: {"bind": path, "mode": "rw"} for volume, path in data.items()},
            str(ca_file): {"bind": CA_IN_CONTAINER, "mode": "ro"},
        },
        healthcheck={
            "test": ["CMD", *healthchecks.app(settings)],
            "interval": interval,
            "timeout": 10 * interval,
            "retries": 3,
            "start_period": 0,
        }
        if healthcheck
        else None,
    )
    standin = Standin(
        client,
        container,
        settings,
        port,
        [*env.passwords.values(), nextauth_secret, cron_secret],
        volumes,
    )
    _STARTED.append(standin)
    try:
        standin.wait_until_listening()
    except BaseException:
        remove_standin(standin)
        raise
    return standin


def own_volumes(client: docker.DockerClient, image: Image, volumes: list[str]) -> None:
    """What the plan's volume-owner one-shot does before a replica starts (components/app.py): each volume's
    top directory handed to the app's user, as root with CHOWN alone, in the app's image."""
    client.containers.run(
        image,
        [f"{APP_UID}:{APP_UID}", *(f"{VOLUMES_ROOT}/{volume}" for volume in volumes)],
        entrypoint=["chown"],
        user="0:0",
        cap_drop=["ALL"],
        cap_add=["CHOWN"],
        security_opt=["no-new-privileges"],
        read_only=True,
        network_mode="none",
        volumes={volume: {"bind": f"{VOLUMES_ROOT}/{volume}", "mode": "rw"} for volume in volumes},
        labels={LABEL: RUN_ID},
        remove=True,
    )


def run_migration(
    client: docker.DockerClient, image: Image, env: Environment, ca_file: Path, url: str | None = None
) -> tuple[int, str]:
    """`standin_app.py migrate` as the plan runs the migration: uid 1001, read-only, straight to Postgres."""
    settings = settings_for(STACK)
    container = client.containers.run(
        image,
        MIGRATE,
        detach=True,
        labels={LABEL: RUN_ID},
        network_mode="host",
        user=f"{APP_UID}:{APP_UID}",
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"DATABASE_URL": url or migration_database_url(settings, env.topo, env.passwords["app"])},
        volumes={str(ca_file): {"bind": MIGRATION_CA_IN_CONTAINER, "mode": "ro"}},
    )
    try:
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, bytes(container.logs()).decode(errors="replace")
    finally:
        container.remove(force=True)


def remove_standin(standin: Standin) -> None:
    standin.container.remove(force=True)
    for volume in standin.volumes:
        standin.client.volumes.get(volume).remove(force=True)


@pytest.fixture(scope="module")
def client(engine: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The engine (tests/engine/conftest.py); afterwards, nothing of this module may be left on it."""
    yield engine
    leftovers = engine.containers.list(all=True, filters={"label": f"{LABEL}={RUN_ID}"})
    for container in leftovers:
        container.remove(force=True)
    for volume in engine.volumes.list(filters={"label": f"{LABEL}={RUN_ID}"}):
        volume.remove(force=True)
    assert not leftovers, f"containers left behind: {[container.name for container in leftovers]}"


@pytest.fixture(scope="module")
def image(client: docker.DockerClient) -> Image:
    """Built (or reused) as the e2e stack builds it: e2e/images/app on the Debian base."""
    return client.images.get(build_service_image(client, "app"))


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """Postgres archives its WAL to the S3-compatible stand-in as deployed (without it, pgBackRest's
    archive-push retries at shutdown for a minute), PgBouncer in front of it, Redis beside."""
    stops: list[Callable[[], None]] = []
    with services.environment(settings_for(STACK)) as env:
        try:
            stops.append(services.start_s3(env).stop)
            stops.append(services.start_postgres(env).stop)
            stops.append(services.start_redis(env).stop)
            holder = Servers(env, services.start_pgbouncer(env))
            yield holder
            holder.pgbouncer.stop()
        finally:
            for stop in reversed(stops):
                stop()


@pytest.fixture(scope="module")
def migrated(client: docker.DockerClient, image: Image, servers: Servers) -> str:
    """The schema migration, run once before any stand-in starts (as the plan orders it); its log."""
    code, output = run_migration(client, image, servers.env, servers.env.certs["ca.crt"])
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def standin(client: docker.DockerClient, image: Image, servers: Servers, migrated: str) -> Iterator[Standin]:
    started = start_standin(client, image, servers.env, servers.env.certs["ca.crt"])
    yield started
    remove_standin(started)


def wait_for_health(standin: Standin, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        standin.container.reload()
        status = str(standin.container.attrs["State"].get("Health", {}).get("Status", ""))
        if status == wanted:
            return
        time.sleep(0.5)
    raise AssertionError(f"health is {status!r}, not {wanted!r}, after {timeout}s")


# ---------------------------------------------------------------------------------------------------
# The image keeps the real image's facts


DIRECTORY_MODES = """
import os, sys
for path in sys.argv[1:]:
    info = os.stat(path)
    print(path, info.st_uid, info.st_gid, oct(info.st_mode & 0o7777))
"""
WRITABLE = ["uploads", "tmp", "public/generated-images", "public/covers", "public/books"]
ABSENT = ["public/avatars", "private"]  # the real image has neither: the plan gives their volumes an owner


def directory_modes(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in output.splitlines()}


@shows_logs
def test_image_keeps_the_real_images_user_workdir_and_directories(client: docker.DockerClient, image: Image) -> None:
    config = image.attrs["Config"]
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert config["WorkingDir"] == "/app"
    assert {"HOSTNAME=0.0.0.0", "PORT=3000"} <= set(config["Env"])
    output = client.containers.run(
        image,
        ["python3", "-c", DIRECTORY_MODES, "/app", *[f"/app/{name}" for name in WRITABLE]],
        remove=True,
        network_mode="none",
        labels={LABEL: RUN_ID},
    )
    modes = directory_modes(bytes(output).decode())
    for name in WRITABLE:
        assert modes[f"/app/{name}"] == [str(APP_UID), str(APP_UID), "0o775"], modes
    assert modes["/app"] == ["0", "0", "0o755"], modes
    assert {f"/app/{name}": APP_UID for name in WRITABLE} == IMAGE_DIRECTORIES["app"], "model/images.py knows them"
    absent = client.containers.run(
        image,
        ["sh", "-c", " ".join(f"test ! -e /app/{name} &&" for name in ABSENT) + " echo absent"],
        remove=True,
        network_mode="none",
        labels={LABEL: RUN_ID},
    )
    assert bytes(absent).decode().strip() == "absent"


@shows_logs
def test_named_volumes_copy_up_the_owner_and_node_is_on_path(standin: Standin) -> None:
    """Each data directory is a named volume: where the image has the directory a new volume takes its owner
    and mode (775); where it has none, the owner one-shot gave the volume's top directory to uid 1001 (755)."""
    paths = [each.path for each in standin.settings.app.data_dirs]
    code, output = standin.exec(["python3", "-c", DIRECTORY_MODES, *paths])
    assert code == 0, output
    for path, owner in directory_modes(output).items():
        mode = "0o775" if path in IMAGE_DIRECTORIES["app"] else "0o755"
        assert owner == [str(APP_UID), str(APP_UID), mode], path
    code, output = standin.exec(["node", "--version"])
    assert code == 0 and output.startswith("v"), output
    code, output = standin.exec(["id", "-u"])
    assert output.strip() == str(APP_UID)


# ---------------------------------------------------------------------------------------------------
# Health: PgBouncer with TLS, Redis with its ACL user, the uploads volume


@shows_logs
def test_health_checks_the_database_redis_and_uploads(standin: Standin) -> None:
    status, body = standin.json("/api/health")
    assert status == 200, body
    assert body["status"] == "healthy"
    assert body["checks"] == {"env": "ok", "database": "ok", "redis": "ok", "uploads": "ok"}
    hostname = standin.container.attrs["Config"]["Hostname"]
    for each in standin.settings.app.data_dirs:  # the "uploads" check writes into every data directory
        code, output = standin.exec(["cat", f"{each.path}/health-{hostname}.txt"])
        assert code == 0 and hostname in output, (each.path, output)
    # Checks at the same time do not disturb each other (under load, a 503 here takes the replica out of
    # nginx's upstream: the load test found it).
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: standin.json("/api/health"), range(64)))
    assert [status for status, _ in answers] == [200] * 64, [body for status, body in answers if status != 200]


@shows_logs
def test_the_plans_healthcheck_passes_inside_the_container(standin: Standin) -> None:
    code, output = standin.exec(healthchecks.app(standin.settings))
    assert code == 0, output
    wait_for_health(standin, "healthy")


@shows_logs
def test_health_fails_while_pgbouncer_is_down_and_recovers(standin: Standin, servers: Servers) -> None:
    servers.pgbouncer.stop()
    try:
        status, body = standin.json("/api/health")
        assert status == 503, body
        assert body["checks"]["database"] != "ok" and body["checks"]["redis"] == "ok"
        assert body["error"].startswith("database: ")
        code, _ = standin.exec(healthchecks.app(standin.settings))
        assert code == 1
        status, _ = standin.request("/api/health", "HEAD")
        assert status == 200  # as the real route: HEAD checks nothing
    finally:
        servers.pgbouncer = services.start_pgbouncer(servers.env)
    status, body = standin.json("/api/health")
    assert status == 200, body


@shows_logs
@pytest.mark.parametrize(
    ("suffix", "trusted", "expected"),
    [
        ("&sslaccept=strict", True, 200),  # verify-full: PgBouncer's certificate names 127.0.0.1
        ("", False, 503),  # a CA that did not sign PgBouncer's certificate
        ("&sslaccept=strict", False, 503),
    ],
)
def test_pgbouncers_certificate_is_checked_against_sslcert(
    client: docker.DockerClient,
    image: Image,
    servers: Servers,
    migrated: str,
    tmp_path: Path,
    suffix: str,
    trusted: bool,
    expected: int,
) -> None:
    ca_file = servers.env.certs["ca.crt"]
    if not trusted:
        ca_file = make_certificates(tmp_path / "other-ca", ["127.0.0.1"], "nobody")["ca.crt"]
    started = start_standin(client, image, servers.env, ca_file, suffix, healthcheck=False)
    try:
        status, body = started.json("/api/health")
        assert status == expected, body
        if expected != 200:
            assert "certificate verify failed" in body["checks"]["database"], body
    finally:
        remove_standin(started)


# ---------------------------------------------------------------------------------------------------
# The metric contract and the test endpoints


def active_sessions(standin: Standin) -> float:
    status, body = standin.request("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    contract = {name for name, source in METRICS.items() if source == "app-contract"}
    assert set(families) == contract, f"the app exports exactly its contract: {sorted(families)}"
    family = families["stories_active_sessions"]
    assert family.type == "gauge" and len(family.samples) == 1 and family.samples[0].labels == {}
    return float(family.samples[0].value)


@shows_logs
def test_metrics_follow_the_sessions_a_test_opens(standin: Standin) -> None:
    standin.request("/api/sessions", "DELETE")
    assert active_sessions(standin) == 0
    status, _ = standin.request("/api/sessions?count=30&seconds=600", "POST")
    assert status == 200
    status, body = standin.json("/api/sessions?count=5&seconds=1", "POST")
    assert status == 200 and body["active"] == 35, body
    assert active_sessions(standin) == 35
    time.sleep(1.2)
    assert active_sessions(standin) == 30
    for query in ("seconds=0", "seconds=3601", "count=0", "count=1001", "seconds=abc"):
        status, _ = standin.request(f"/api/sessions?{query}", "POST")
        assert status == 400, query
    status, body = standin.json("/api/sessions", "DELETE")
    assert body["ended"] == 30
    assert active_sessions(standin) == 0


@shows_logs
def test_replica_and_slow_answers(standin: Standin) -> None:
    status, body = standin.json("/api/replica")
    assert status == 200 and body["replica"] == standin.container.attrs["Config"]["Hostname"]
    started = time.monotonic()
    status, body = standin.json("/api/slow?ms=400")
    assert status == 200 and body["slept_ms"] == 400
    assert time.monotonic() - started >= 0.4
    for query in ("ms=5001", "ms=-1", "ms=x"):
        status, _ = standin.request(f"/api/slow?{query}")
        assert status == 400, query
    status, _ = standin.request("/api/nothing-here")
    assert status == 404


@shows_logs
def test_pages_and_logins_do_the_work_of_the_real_ones(standin: Standin) -> None:
    """What the load test replays: a page rendered from a query, and a login that checks a password hash
    (tens of milliseconds of CPU), queries and keeps its session in Redis."""
    for path in ("/", "/library"):
        status, body = standin.request(path)
        assert status == 200 and b"migration(s); served by" in body, (path, body)
    sessions_before = standin.exec(["python3", "-c", COUNT_SESSIONS])
    started = time.monotonic()
    status, body = standin.request("/api/auth/callback/credentials", "POST", data=b"name=student&password=x")
    assert status == 200 and json.loads(body)["url"] == "/library", body
    assert time.monotonic() - started >= 0.01
    assert int(standin.exec(["python3", "-c", COUNT_SESSIONS])[1]) == int(sessions_before[1]) + 1
    status, _ = standin.request("/api/auth/callback/credentials")  # GET: not a login
    assert status == 404


COUNT_SESSIONS = """
import os, redis
client = redis.Redis.from_url(os.environ["REDIS_URL"])
print(len(list(client.scan_iter("stories:standin:session:*"))))
"""


@shows_logs
def test_one_log_line_per_request_and_no_secret(standin: Standin) -> None:
    marker = secrets.token_hex(6)
    for _ in range(3):
        standin.request(f"/api/replica?marker={marker}")
    standin.request("/api/health")
    logs = standin.logs()
    assert sum(f"/api/replica?marker={marker}" in line for line in logs.splitlines()) == 3
    for secret in standin.secrets:
        assert secret not in logs


# ---------------------------------------------------------------------------------------------------
# The app's needs: its migration, its data directories, its cron routes


def app_connection(servers: Servers) -> psycopg.Connection[Any]:
    """The app's role straight to Postgres over verified TLS (as the migration connects)."""
    env = servers.env
    return psycopg.connect(
        host=env.topo.postgres_host,
        port=env.topo.postgres_port,
        dbname=settings_for(STACK).database.name,
        user=settings_for(STACK).database.user,
        password=env.passwords["app"],
        sslmode="verify-full",
        sslrootcert=str(env.certs["ca.crt"]),
        autocommit=True,
    )


@shows_logs
def test_the_migration_creates_its_tables_and_pgcrypto_and_records_each_run(
    client: docker.DockerClient, image: Image, servers: Servers, migrated: str
) -> None:
    assert "migrate: applied 0001_standin" in migrated, migrated
    assert "sslmode=verify-full" in migrated and "port=" in migrated, "straight to Postgres, TLS verified"
    code, again = run_migration(client, image, servers.env, servers.env.certs["ca.crt"])
    assert code == 0, again
    with app_connection(servers) as conn:
        runs = conn.execute("SELECT count(*), bool_and(applied_at <= now()) FROM standin_migrations").fetchone()
        assert runs is not None and runs[0] >= 2 and runs[1] is True
        extension = conn.execute("SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pgcrypto'")
        assert extension.fetchone() is not None
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'standin_cron_calls'").fetchone()
        assert owner == (settings_for(STACK).database.user,)
    for secret in servers.env.passwords.values():
        assert secret not in migrated + again


@shows_logs
def test_the_migration_refuses_pgbouncer_and_fails_with_the_reason(
    client: docker.DockerClient, image: Image, servers: Servers
) -> None:
    env = servers.env
    settings = settings_for(STACK)
    pooled = database_url(settings, env.topo, env.passwords["app"])
    code, output = run_migration(client, image, env, env.certs["ca.crt"], pooled)
    assert code == 2 and "pgbouncer=true" in output, output
    wrong = migration_database_url(settings, env.topo, "not-the-password")
    code, output = run_migration(client, image, env, env.certs["ca.crt"], wrong)
    assert code == 1 and "migrate: failed:" in output and "password authentication failed" in output, output
    assert "not-the-password" not in output and env.passwords["app"] not in output


@shows_logs
def test_files_are_written_into_each_data_directory_and_read_back(standin: Standin) -> None:
    for each in standin.settings.app.data_dirs:
        content = secrets.token_bytes(2048)
        status, body = standin.request(f"/api/files/{each.name}/probe-{RUN_ID}.bin", "POST", data=content)
        assert status == 201, (each.name, body)
        status, read = standin.request(f"/api/files/{each.name}/probe-{RUN_ID}.bin")
        assert status == 200 and read == content, each.name
        code, output = standin.exec(["stat", "-c", "%u %a", f"{each.path}/probe-{RUN_ID}.bin"])
        assert code == 0 and output.split() == [str(APP_UID), "644"], (each.name, output)
    assert standin.request("/api/files/covers/never-written.png")[0] == 404
    assert standin.request("/api/files/elsewhere/x.png", "POST", data=b"x")[0] == 400
    assert standin.request("/api/files/covers/..%2Fescape", "POST", data=b"x")[0] == 400
    assert standin.request("/api/files/covers/big.bin", "POST", data=b"x" * ((1 << 20) + 1))[0] == 413


@shows_logs
def test_cron_routes_answer_only_the_bearer_of_cron_secret_and_count_calls(standin: Standin) -> None:
    cron_secret = standin.secrets[-1]
    path = "/api/cron/hard-delete"
    _, before = standin.json("/api/cron/calls")
    assert standin.request(path)[0] == 401
    assert standin.request(path, headers={"Authorization": "Bearer not-the-secret"})[0] == 401
    assert standin.request(path, headers={"Authorization": cron_secret})[0] == 401  # no scheme
    status, body = standin.request(path, headers={"Authorization": f"Bearer {cron_secret}"})
    assert status == 200 and json.loads(body)["success"] is True, body
    status, after = standin.json("/api/cron/calls")
    assert status == 200, after
    calls, earlier = after["calls"][path], before["calls"][path]
    assert calls["authorized"] == earlier["authorized"] + 1
    assert calls["unauthorized"] == earlier["unauthorized"] + 3
    assert set(after["calls"]) >= {f"/api/cron/{name}" for name in ("data-retention", "notification-digest")}
    assert cron_secret not in standin.logs()


# ---------------------------------------------------------------------------------------------------
# Stopping


@shows_logs
def test_sigterm_stops_it_cleanly(client: docker.DockerClient, image: Image, servers: Servers, migrated: str) -> None:
    started = start_standin(client, image, servers.env, servers.env.certs["ca.crt"], healthcheck=False)
    try:
        status, _ = started.request("/api/health")
        assert status == 200
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(started.request, "/api/slow?ms=1500")
            time.sleep(0.5)
            began = time.monotonic()
            started.container.stop(timeout=30)  # Docker's default signal, SIGTERM, as the plan stops it
            assert time.monotonic() - began < 10
            assert in_flight.result()[0] == 200  # the request in flight was answered before the exit
        started.container.reload()
        assert started.container.attrs["State"]["ExitCode"] == 0
        assert "received SIGTERM" in started.logs() and "stopped" in started.logs()
    finally:
        remove_standin(started)
