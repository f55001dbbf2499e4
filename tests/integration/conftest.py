"""Real Postgres, PgBouncer, Redis and nginx on loopback, with the files the stack deploys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import services
from harness.servers import Server
from harness.services import Environment, PgBouncer, Postgres, Redis
from tools.plan import settings_for

pytestmark = pytest.mark.integration

STACK_UNDER_TEST = "prod"


@pytest.fixture(scope="session")
def environment() -> Iterator[Environment]:
    with services.environment(settings_for(STACK_UNDER_TEST)) as env:
        yield env


@pytest.fixture(scope="session")
def s3(environment: Environment) -> Iterator[services.S3]:
    server = services.start_s3(environment)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(environment: Environment, s3: services.S3) -> Iterator[Postgres]:
    """Archives its WAL to the S3 repository as deployed, so the repository outlives it."""
    pg = services.start_postgres(environment)
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def pgbouncer(environment: Environment, postgres: Postgres) -> Iterator[PgBouncer]:
    bouncer = services.start_pgbouncer(environment)
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def redis_server(environment: Environment) -> Iterator[Redis]:
    redis = services.start_redis(environment)
    yield redis
    redis.stop()


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """On failure, show the logs of the servers the test used."""
    if call.excinfo is None or call.when != "call":
        return
    funcargs = getattr(item, "funcargs", {})
    for fixture in ("postgres", "pgbouncer", "redis_server", "nginx"):
        value = funcargs.get(fixture)
        server = getattr(value, "server", None)
        if isinstance(server, Server):
            item.add_report_section("call", f"{server.name} log", server.log()[-20000:])
