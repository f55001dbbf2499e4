"""Postgres and PgBouncer with the rendered files: tuning, statistics, least privilege, pooling."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import psycopg
import pytest

from configs import healthchecks
from harness.services import PgBouncer, Postgres
from model.topology import ROLES
from model.tuning import postgres_tuning

pytestmark = pytest.mark.integration


def scalar(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def show(conn: psycopg.Connection[tuple[object, ...]], name: str) -> str:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def test_postgres_runs_the_derived_tuning(postgres: Postgres) -> None:
    tuning = postgres_tuning(postgres.env.settings)
    with psycopg.connect(postgres.superuser(), autocommit=True) as conn:
        shown = {
            name: show(conn, name)
            for name in (
                "shared_buffers",
                "effective_cache_size",
                "work_mem",
                "max_connections",
                "password_encryption",
                "statement_timeout",
                "idle_in_transaction_session_timeout",
                "log_min_duration_statement",
                "ssl",
            )
        }
    assert shown["shared_buffers"] == f"{tuning.shared_buffers_mb}MB"
    assert shown["effective_cache_size"] == f"{tuning.effective_cache_size_mb}MB"
    assert shown["work_mem"] == f"{tuning.work_mem_mb}MB"
    assert int(shown["max_connections"]) == tuning.max_connections
    assert shown["password_encryption"] == "scram-sha-256"
    assert shown["statement_timeout"] == "30s" and shown["idle_in_transaction_session_timeout"] == "1min"
    assert shown["log_min_duration_statement"] == "1s" and shown["ssl"] == "on"


def test_pg_stat_statements_records_queries(postgres: Postgres) -> None:
    env = postgres.env
    app = postgres.dsn(env.settings.database.user, env.passwords["app"])
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("SELECT 4242 AS marker_for_statements")
    with psycopg.connect(postgres.dsn("postgres", env.passwords["superuser"]), autocommit=True) as conn:
        calls = conn.execute(
            "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE 'SELECT $1 AS marker_for_statements'"
        ).fetchone()
    assert calls is not None and calls[0] >= 1


def test_no_password_verifier_is_kept_in_pg_stat_statements(postgres: Postgres) -> None:
    """The init SQL creates roles with their SCRAM verifiers; pg_stat_statements, which the monitor role
    reads, would keep those statements as written."""
    env = postgres.env
    with psycopg.connect(postgres.dsn("postgres", env.passwords["superuser"]), autocommit=True) as conn:
        kept = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%SCRAM-SHA-256$%'").fetchone()
    assert kept == (0,)


def test_app_role_owns_its_database_and_nothing_more(postgres: Postgres) -> None:
    env = postgres.env
    app = postgres.dsn(env.settings.database.user, env.passwords["app"])
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE TABLE books (id serial PRIMARY KEY, title text NOT NULL)")
        conn.execute("INSERT INTO books (title) VALUES ('The Little Prince')")
        assert conn.execute("SELECT count(*) FROM books").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE intruder LOGIN")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.dsn(env.settings.database.user, env.passwords["app"], dbname="postgres"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.dsn(env.settings.database.user, "wrong-" + env.passwords["app"]))


def test_pgbouncer_lookup_works_and_reveals_nothing_else(postgres: Postgres) -> None:
    env = postgres.env
    certs = env.certs
    auth = postgres.dsn(
        ROLES["auth"],
        sslmode="verify-ca",
        sslrootcert=str(certs["ca.crt"]),
        sslcert=str(certs["client.crt"]),
        sslkey=str(certs["client.key"]),
    )
    with psycopg.connect(auth, autocommit=True) as conn:
        row = conn.execute("SELECT username, password FROM pgbouncer.user_lookup(%s)", [env.settings.database.user])
        username, verifier = row.fetchone()  # type: ignore[misc]
        assert username == env.settings.database.user and verifier.startswith("SCRAM-SHA-256$4096:")
        for other in ("postgres", ROLES["monitor"], ROLES["auth"], "no_such_role"):
            found = conn.execute("SELECT username FROM pgbouncer.user_lookup(%s)", [other]).fetchone()
            assert found == (None,), other
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_authid")
    with psycopg.connect(auth, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM public.books")
    # Without its certificate the lookup role cannot log in at all: it has no password.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres.dsn(ROLES["auth"], "anything"))


def test_app_logs_in_through_pgbouncer_with_scram(pgbouncer: PgBouncer) -> None:
    env = pgbouncer.env
    dsn = pgbouncer.dsn(env.settings.database.user, env.passwords["app"])
    assert scalar(dsn, "SELECT current_user") == env.settings.database.user
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pgbouncer.dsn(env.settings.database.user, "wrong-" + env.passwords["app"]))
    # Both sides are TLS: the client's, verified against the CA, and the pooled server connection.
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
    assert scalar(dsn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    plaintext = pgbouncer.dsn(env.settings.database.user, env.passwords["app"], sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        psycopg.connect(plaintext)


def test_pgbouncer_healthcheck_command_succeeds(pgbouncer: PgBouncer) -> None:
    command = healthchecks.pgbouncer(pgbouncer.env.topo)
    result = subprocess.run(
        command,
        env={**os.environ, "PGPASSFILE": str(pgbouncer.passfile)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("PgBouncer")


def test_hundred_clients_share_the_pool_and_client_101_is_refused(pgbouncer: PgBouncer, postgres: Postgres) -> None:
    env = pgbouncer.env
    pool = env.settings.pgbouncer
    dsn = pgbouncer.dsn(env.settings.database.user, env.passwords["app"])
    clients = [psycopg.connect(dsn, autocommit=True) for _ in range(pool.max_client_conn)]
    try:
        peak = 0
        stop = threading.Event()

        def work(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            for _ in range(5):
                with conn.transaction():
                    conn.execute("SELECT pg_sleep(0.02)")

        def watch() -> None:
            nonlocal peak
            with psycopg.connect(postgres.superuser(), autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'",
                        [env.settings.database.user],
                    ).fetchone()
                    peak = max(peak, int(row[0]))  # type: ignore[index]
                    time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=work, args=(conn,)) for conn in clients]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        stop.set()
        watcher.join()
        assert 1 < peak <= pool.default_pool_size, f"peak server connections {peak}"

        with pytest.raises(psycopg.OperationalError, match="no more connections allowed"):
            psycopg.connect(dsn)

        clients.pop().close()
        stats = pgbouncer.dsn(ROLES["pgbouncer_stats"], env.passwords["stats"], dbname="pgbouncer")
        with psycopg.connect(stats, autocommit=True) as conn:
            cursor = conn.execute("SHOW POOLS")
            columns = [column.name for column in cursor.description or []]
            pools = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            (app_pool,) = [
                p
                for p in pools
                if (p["database"], p["user"]) == (env.settings.database.name, env.settings.database.user)
            ]
            assert app_pool["cl_active"] + app_pool["cl_waiting"] == pool.max_client_conn - 1
            cursor = conn.execute("SHOW SERVERS")
            user_column = [column.name for column in cursor.description or []].index("user")
            app_servers = [row for row in cursor.fetchall() if row[user_column] == env.settings.database.user]
            assert 1 < len(app_servers) <= pool.default_pool_size
    finally:
        for conn in clients:
            conn.close()


def test_pgbouncer_survives_a_postgres_restart(pgbouncer: PgBouncer, postgres: Postgres) -> None:
    env = pgbouncer.env
    dsn = pgbouncer.dsn(env.settings.database.user, env.passwords["app"])
    assert scalar(dsn, "SELECT 1") == 1
    postgres.stop()
    postgres.start()
    deadline = time.monotonic() + 15
    while True:
        try:
            assert scalar(dsn, "SELECT 2") == 2
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert pgbouncer.server.process is not None and pgbouncer.server.process.poll() is None


def rows_of(dsn: str, sql: str) -> list[dict[str, object]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql)
        columns = [column.name for column in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_the_exporters_read_what_the_overview_panels_show(pgbouncer: PgBouncer, postgres: Postgres) -> None:
    """The overview's pool and WAL panels query pgbouncer_databases_{pool_size,max_connections,
    current_connections} and pg_stat_archiver_last_archive_age: pgbouncer_exporter turns SHOW DATABASES'
    columns into the first, postgres_exporter's default query of pg_stat_archiver gives the last. Both read
    here as the exporters' roles do."""
    env = pgbouncer.env
    pool = env.settings.pgbouncer
    stats = pgbouncer.dsn(ROLES["pgbouncer_stats"], env.passwords["stats"], dbname="pgbouncer")
    databases = {row["name"]: row for row in rows_of(stats, "SHOW DATABASES")}
    app = databases[env.settings.database.name]
    assert app["pool_size"] == pool.default_pool_size
    assert app["max_connections"] == pool.default_pool_size + pool.reserve_pool_size
    assert isinstance(app["current_connections"], int)
    assert "pgbouncer" in databases  # the admin console, which the panel leaves out by name
    monitor = postgres.dsn(ROLES["monitor"], env.passwords["monitor"])
    (archiver,) = rows_of(
        monitor, "SELECT *, extract(epoch from now() - last_archived_time) AS last_archive_age FROM pg_stat_archiver"
    )
    assert "last_archive_age" in archiver and "failed_count" in archiver
