"""`make status`, `make db-top`, `make db-maintain` and `make psql` against the real servers: the same command
lines they run in the stack's containers, run here by a local Runner against Debian's Postgres 15 (with
pg_stat_statements), PgBouncer 1.18, Redis 7.0 and Alertmanager 0.25 on loopback with the rendered files,
as the same least-privileged roles."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

import psycopg
import pytest

from configs import monitoring
from harness.servers import Server, free_port, service_user, write
from harness.services import Environment, PgBouncer, Postgres, Redis
from model.topology import ROLES
from tools import db, ops, status

pytestmark = pytest.mark.integration
STACK = "prod"


class LocalRunner:
    """Runs a service's command on this machine, where the integration layer runs that service: the
    same argument list as in its container, with the environment its container gives it."""

    def __init__(self, service_env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.service_env = service_env or {}
        self.calls: list[tuple[str, list[str]]] = []

    def run(
        self,
        service: str,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120,
    ) -> ops.RunResult:
        self.calls.append((service, list(argv)))
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "HOME": "/tmp", **self.service_env.get(service, {}), **(env or {})},
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ops.CommandError(service, argv[0], ops.first_line(result.stderr) or ops.first_line(result.stdout))
        return ops.RunResult(result.stdout, result.stderr)


def credentials(env: Environment) -> ops.StaticCredentials:
    return ops.StaticCredentials(env.passwords["monitor"], env.passwords["redis_exporter"], env.passwords["app"])


def app_direct(postgres: Postgres) -> str:
    env = postgres.env
    return postgres.dsn(env.settings.database.user, env.passwords["app"])


@pytest.fixture
def runner(pgbouncer: PgBouncer) -> LocalRunner:
    return LocalRunner({"pgbouncer": {"PGPASSFILE": str(pgbouncer.passfile)}})


def secrets_of(env: Environment) -> list[str]:
    return list(env.passwords.values())


# --- status ------------------------------------------------------------------------------------------------


def test_status_reads_pgbouncer_postgres_and_redis(
    runner: LocalRunner, postgres: Postgres, pgbouncer: PgBouncer, redis_server: Redis
) -> None:
    env = postgres.env
    app = pgbouncer.dsn(env.settings.database.user, env.passwords["app"], sslmode="verify-full")
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("SELECT pg_backend_pid()")  # not `SELECT <constant>`: see test_postgres_pgbouncer
        report = status.gather(
            env.settings,
            STACK,
            None,
            runner,
            credentials(env),
            topo=env.topo,
            sections=("pgbouncer", "postgres", "redis"),
        )
    assert report.errors == {}
    assert report.pools is not None and report.postgres is not None and report.redis is not None
    pools = {(pool.database, pool.user): pool for pool in report.pools}
    assert (env.settings.database.name, env.settings.database.user) in pools
    assert report.postgres.max_connections >= env.settings.pgbouncer.server_connections
    assert report.postgres.total_connections >= 1  # PgBouncer's server connection for the app
    assert report.postgres.archive_mode == "on"
    assert report.postgres.archive_timeout_seconds == env.settings.backup.postgres.archive_timeout_seconds
    assert report.redis.maxmemory == env.settings.redis.maxmemory_mb * 1024 * 1024
    assert report.redis.policy == env.settings.redis.maxmemory_policy
    findings = status.judge(report, env.settings)
    assert [f for f in findings if f.section in ("pgbouncer", "redis") and f.level == status.CRIT] == []
    text, _ = status.render(report, env.settings, "table", colour=False)
    document, _ = status.render(report, env.settings, "json", colour=False)
    for secret in secrets_of(env):
        assert secret not in text and secret not in document


def test_status_with_wrong_credentials_says_so_without_the_secret(
    runner: LocalRunner, postgres: Postgres, redis_server: Redis
) -> None:
    env = postgres.env
    wrong = ops.StaticCredentials(monitor="not-the-password-1", redis_exporter="not-the-password-2")
    report = status.gather(env.settings, STACK, None, runner, wrong, topo=env.topo, sections=("postgres", "redis"))
    assert set(report.errors) == {"postgres", "redis"}
    assert "password authentication failed" in report.errors["postgres"]
    assert "NOAUTH" in report.errors["redis"] or "WRONGPASS" in report.errors["redis"]
    text, attention = status.render(report, env.settings, "table", colour=False)
    assert attention and "not-the-password" not in text


def test_the_monitor_role_reads_statistics_and_no_app_data(runner: LocalRunner, postgres: Postgres) -> None:
    env = postgres.env
    with psycopg.connect(app_direct(postgres), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ops_private (id int PRIMARY KEY, note text)")
    argv, psql_env = db.psql_invocation(env.settings, env.topo, "monitor", credentials(env), "SELECT current_user")
    assert ROLES["monitor"] in runner.run("postgres", argv, env=psql_env).stdout.split()
    for sql in ("SELECT count(*) FROM ops_private", "CREATE TABLE ops_intruder (id int)", "SELECT pg_stat_reset()"):
        argv, psql_env = db.psql_invocation(env.settings, env.topo, "monitor", credentials(env), sql)
        with pytest.raises(ops.CommandError, match="permission denied"):
            runner.run("postgres", argv, env=psql_env)


def test_psql_as_the_app_goes_over_verified_tls(runner: LocalRunner, postgres: Postgres) -> None:
    env = postgres.env
    sql = "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    argv, psql_env = db.psql_invocation(env.settings, env.topo, "app", credentials(env), sql)
    lines = [line.strip() for line in runner.run("postgres", argv, env=psql_env).stdout.splitlines()]
    assert f"{env.settings.database.user} true" in lines


# --- Alertmanager ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alertmanager(environment: Environment) -> Iterator[int]:
    """Debian's Alertmanager with the stack's rendered file (receivers left out: their secrets are the
    stack's), on a loopback port."""
    settings = environment.settings
    quiet = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update={"receivers": []})})
    directory = environment.base / f"alertmanager-{free_port()}"
    user = service_user("prometheus")
    write(directory / "alertmanager.yml", monitoring.render_alertmanager(quiet, {}))
    (directory / "data").mkdir()
    user.own(directory)
    port = free_port()
    server = Server(
        "alertmanager",
        [
            "prometheus-alertmanager",
            f"--config.file={directory}/alertmanager.yml",
            f"--storage.path={directory}/data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        user,
        directory / "alertmanager.log",
    ).start()
    server.wait_for_port(port, timeout=30)
    yield port
    server.stop()


def test_firing_alerts_come_from_alertmanagers_api(alertmanager: int) -> None:
    runner = LocalRunner()
    assert status.collect_alerts(runner, alertmanager) == []
    alert = {
        "labels": {"alertname": "WalArchivingFailing", "severity": "critical", "job": "backup"},
        "annotations": {"summary": "WAL archiving is failing"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{alertmanager}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()
    alerts = status.collect_alerts(runner, alertmanager)
    assert [(a.name, a.severity, a.summary) for a in alerts] == [
        ("WalArchivingFailing", "critical", "WAL archiving is failing")
    ]
    assert status.judge_alerts(alerts)[0].level == status.CRIT


# --- db-top -------------------------------------------------------------------------------------------------------


def test_db_top_shows_the_slowest_and_most_frequent_statements_and_no_literal(
    runner: LocalRunner, postgres: Postgres
) -> None:
    env = postgres.env
    literal = "literal-secret-" + os.urandom(6).hex()
    with psycopg.connect(app_direct(postgres), autocommit=True) as conn:
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.2), 'db-top slow marker'")
        for number in range(60):
            conn.execute("SELECT %s::int + 1 AS db_top_frequent_marker", (number,), prepare=False)
    with psycopg.connect(postgres.dsn("postgres", env.passwords["superuser"]), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE db_top_probe_2 LOGIN PASSWORD '{literal}'")  # in the app database
        conn.execute("DROP ROLE db_top_probe_2")
    top = db.collect_top(runner, env.settings, env.topo, credentials(env), 50)
    assert top.database == env.settings.database.name and top.statements > 0
    slow = next(s for s in top.slowest if "pg_sleep" in s.query)
    assert slow.calls >= 3 and slow.mean_ms >= 190 and slow.role == env.settings.database.user
    frequent = next(s for s in top.frequent if "db_top_frequent_marker" in s.query)
    assert frequent.calls >= 60 and frequent.rows >= 60
    assert all(s.role != ROLES["monitor"] for s in top.slowest + top.frequent)
    created = [s for s in top.slowest + top.frequent if "db_top_probe_2" in s.query]
    assert created and created[0].query == "CREATE ROLE db_top_probe_2 LOGIN PASSWORD '?'"
    text = db.render_top(top)
    assert "pg_sleep" in text and literal not in text
    for secret in secrets_of(env):
        assert secret not in text


# --- db-maintain ----------------------------------------------------------------------------------------------------


def dead_tuples_visible(postgres: Postgres, table: str, expected: int) -> None:
    """Wait until the cumulative statistics show the deleted rows (backends report them when idle)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(app_direct(postgres), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()
            if row is not None and row[0] >= expected:
                return
            time.sleep(0.3)
    raise AssertionError(f"{table}: {expected} dead tuples never showed")


def test_db_maintain_vacuums_where_dead_tuples_pile_up_without_waiting_for_anyone(
    runner: LocalRunner, postgres: Postgres
) -> None:
    env = postgres.env
    with psycopg.connect(app_direct(postgres), autocommit=True) as conn:
        for table in ("maint_books", "maint_locked"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(
                f"CREATE TABLE {table} (id serial PRIMARY KEY, title text NOT NULL, shelf int) "
                "WITH (autovacuum_enabled = false)"
            )
            conn.execute(f"INSERT INTO {table} (title, shelf) SELECT 'b' || g, g % 40 FROM generate_series(1, 6000) g")
            conn.execute(f"DELETE FROM {table} WHERE id <= 4000")
        conn.execute("CREATE INDEX maint_books_shelf ON maint_books (shelf)")
        conn.execute("DROP TABLE IF EXISTS maint_small")
        conn.execute("CREATE TABLE maint_small (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO maint_small VALUES (1, 'one')")
    dead_tuples_visible(postgres, "maint_books", 4000)
    dead_tuples_visible(postgres, "maint_locked", 4000)

    # A writer in the middle of a transaction on maint_books (ROW EXCLUSIVE) and a session holding
    # maint_locked (SHARE UPDATE EXCLUSIVE, what VACUUM itself takes): maintenance must neither wait for
    # the one nor block the other.
    writer = psycopg.connect(app_direct(postgres))
    writer.execute("UPDATE maint_books SET title = title WHERE id = 5000")
    holder = psycopg.connect(app_direct(postgres))
    holder.execute("LOCK TABLE maint_locked IN SHARE UPDATE EXCLUSIVE MODE")
    finished: dict[str, object] = {}

    def run() -> None:
        finished["result"] = db.maintain(runner, env.settings, env.topo, credentials(env))

    started = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)
    seconds = time.monotonic() - started
    try:
        assert not worker.is_alive(), "db-maintain waited on another session's lock"
        writer.execute("UPDATE maint_books SET shelf = shelf WHERE id = 4500")  # the writer goes on meanwhile
        writer.commit()
    finally:
        writer.close()
        holder.rollback()
        holder.close()
    result = finished["result"]
    assert isinstance(result, db.Maintenance) and seconds < 60
    assert result.user == env.settings.database.user  # the app role, not the superuser
    rows = {row.table: row for row in result.tables}
    books = rows["public.maint_books"]
    assert (books.action, books.result, books.dead_before) == (db.VACUUM, "done", 4000)
    assert books.dead_after < 4000
    locked = rows["public.maint_locked"]
    assert locked.action == db.VACUUM and locked.result.startswith("skipped")
    assert rows["public.maint_small"].action == db.ANALYZE and rows["public.maint_small"].result == "done"
    assert "maint_books_shelf" in [index.index for index in result.unused_indexes]
    text = db.render_maintenance(result)
    assert "public.maint_books" in text and "skipped: someone holds a lock" in text
    for secret in secrets_of(env):
        assert secret not in text

    again = db.maintain(runner, env.settings, env.topo, credentials(env))
    rows = {row.table: row for row in again.tables}
    assert rows["public.maint_books"].action != db.VACUUM  # nothing piles up any more (the writer's rows: ANALYZE)
    assert rows["public.maint_locked"].result == "done"  # the lock is gone


def test_db_maintain_tells_a_wrong_password(runner: LocalRunner, postgres: Postgres) -> None:
    env = postgres.env
    with pytest.raises(ops.CommandError, match="password authentication failed"):
        db.maintain(runner, env.settings, env.topo, ops.StaticCredentials(app="not-the-app-password"))
