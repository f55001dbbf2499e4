"""The stand-in app image (e2e/images/app) on the real Docker engine, against the real PgBouncer, Postgres
and Redis from Debian's packages on loopback.

The container runs as the plan runs the app (uid 1001, read-only root with the plan's tmpfs, every
capability dropped, no-new-privileges, the plan's healthcheck, named volumes on uploads/ and
public/books), with host networking so that it reaches the servers on 127.0.0.1 and nothing else of
ours. DATABASE_URL and REDIS_URL are built by components/app.py exactly as the stack builds them, with the
stack's CA file at the path the URL names.
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
import pytest
from docker.models.containers import Container
from docker.models.images import Image
from prometheus_client.parser import text_string_to_metric_families

from components.app import APP_CONFIG_DIR, database_url, redis_url
from configs import healthchecks
from configs.metrics import METRICS
from e2e.images import build_service_image
from harness import services
from harness.servers import free_port, make_certificates
from harness.services import Environment, PgBouncer
from model.settings import Settings
from tools.plan import settings_for

pytestmark = pytest.mark.engine

STACK = "e2e"
CA_IN_CONTAINER = f"{APP_CONFIG_DIR}/database-ca.crt"
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

    def request(self, path: str, method: str = "GET", timeout: float = 20) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), method=method)
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
    volumes = [f"{name}-uploads", f"{name}-books"]
    for volume in volumes:
        client.volumes.create(volume, labels={LABEL: RUN_ID})
    nextauth_secret = secrets.token_urlsafe(32)
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
            "DATABASE_URL": database_url(settings, env.topo, env.passwords["app"]) + url_suffix,
            "REDIS_URL": redis_url(env.topo, env.passwords["redis_app"]),
        },
        volumes={
            volumes[0]: {"bind": settings.app.uploads_path, "mode": "rw"},
            volumes[1]: {"bind": settings.app.books_path, "mode": "rw"},
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
        [*env.passwords.values(), nextauth_secret],
        volumes,
    )
    _STARTED.append(standin)
    try:
        standin.wait_until_listening()
    except BaseException:
        remove_standin(standin)
        raise
    return standin


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
def standin(client: docker.DockerClient, image: Image, servers: Servers) -> Iterator[Standin]:
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


@shows_logs
def test_named_volumes_copy_up_the_owner_and_node_is_on_path(standin: Standin) -> None:
    """uploads/ and public/books are the plan's named volumes: new volumes take the image's owner."""
    app = standin.settings.app
    code, output = standin.exec(["python3", "-c", DIRECTORY_MODES, app.uploads_path, app.books_path])
    assert code == 0, output
    for path, owner in directory_modes(output).items():
        assert owner == [str(APP_UID), str(APP_UID), "0o775"], path
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
    code, output = standin.exec(["cat", f"{standin.settings.app.uploads_path}/health-{hostname}.txt"])
    assert code == 0 and hostname in output, output


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
# Stopping


@shows_logs
def test_sigterm_stops_it_cleanly(client: docker.DockerClient, image: Image, servers: Servers) -> None:
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
