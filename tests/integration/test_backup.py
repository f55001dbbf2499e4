"""Backups and restores with the real Postgres 15, pgBackRest, restic and Redis, and moto's
S3-compatible server over TLS, all driven through the same command line the backup container runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import psycopg
import pytest

from harness import services
from harness.servers import PG_BIN, Server, free_port, run_as
from harness.services import BackupCli, Environment, Postgres, Redis

pytestmark = pytest.mark.integration
STACK = "prod"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def app_dsn(postgres: Postgres) -> str:
    return postgres.dsn(postgres.env.settings.database.user, postgres.env.passwords["app"])


def switch_and_wait_for_archive(postgres: Postgres) -> None:
    """What archive_timeout does within a minute: close the current WAL segment, then wait until
    pgBackRest has archived it."""
    with psycopg.connect(postgres.superuser(), autocommit=True) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            archived, failed = conn.execute(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()  # type: ignore[misc]
            if archived is not None and archived >= segment:
                return
            time.sleep(0.2)
    raise AssertionError(
        f"segment {segment} was not archived (last failed: {failed}):\n{postgres.server.log()[-3000:]}"
    )


@pytest.fixture(scope="module")
def cli(environment: Environment, s3: services.S3, postgres: Postgres, redis_server: Redis) -> BackupCli:
    # verify reads every restic pack here (the stack reads a sample each day), so one flipped byte is found.
    backup = environment.settings.backup
    thorough = backup.model_copy(update={"files": backup.files.model_copy(update={"verify_read_data_percent": 100})})
    cli = BackupCli(environment, STACK, environment.settings.model_copy(update={"backup": thorough}))
    ok(cli("init"))
    return cli


@pytest.fixture(scope="module")
def uploads(environment: Environment) -> dict[str, bytes]:
    sources = dict(environment.topo.backup_sources)
    files = {
        "uploads/avatars/7.png": os.urandom(150_000),
        "uploads/essays/essay-3.pdf": b"%PDF-1.7\n" + os.urandom(300_000),
        "books/moon-and-stars.pdf": b"%PDF-1.7\n" + os.urandom(1_000_000),
        "certificates/live/fullchain.pem": b"-----BEGIN CERTIFICATE-----\ntest\n",
    }
    for name, content in files.items():
        source, _, relative = name.partition("/")
        path = Path(sources[source]) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def test_full_backup_then_archiving_then_drill(cli: BackupCli, postgres: Postgres) -> None:
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
        conn.execute("CREATE TABLE reading_log (id serial PRIMARY KEY, student int NOT NULL, book text NOT NULL)")
        conn.execute(
            "INSERT INTO reading_log (student, book) SELECT g % 97, 'book-' || g FROM generate_series(1, 5000) g"
        )
    assert "pgBackRest full backup" in ok(cli("backup", "postgres", "--type", "full"))
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO reading_log (student, book) SELECT 1, 'after-full-' || g FROM generate_series(1, 500) g"
        )
    ok(cli("backup", "postgres", "--type", "incr"))
    ok(cli("heartbeat"))  # what the service does every 15 s
    ok(cli("status"))
    switch_and_wait_for_archive(postgres)
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:  # not archived yet when the drill starts
        conn.execute("CREATE TABLE late_writes AS SELECT g AS id FROM generate_series(1, 7) g")
    drill = ok(cli("drill"))
    assert re.search(r"public\.reading_log\s+source\s+5500\s+restored\s+5500\s+ok", drill), drill
    assert re.search(r"public\.late_writes\s+source\s+7\s+restored\s+7\s+ok", drill), drill
    assert "drill passed" in drill
    rto = float(re.search(r"RTO \(restore until it answers queries\): ([\d.]+) s", drill).group(1))  # type: ignore[union-attr]
    assert 0 < rto < 30 * 60


def test_files_and_redis_restore_byte_for_byte(
    cli: BackupCli, uploads: dict[str, bytes], redis_server: Redis, environment: Environment
) -> None:
    assert "restic files snapshot" in ok(cli("backup", "files"))
    assert "restic redis snapshot" in ok(cli("backup", "redis"))
    target = Path(environment.topo.backup_work_dir) / "restore-files"
    ok(cli("restore", "--into", str(target)))
    sources = dict(environment.topo.backup_sources)
    for name, content in uploads.items():
        source, _, relative = name.partition("/")
        restored = target / "files" / sources[source].lstrip("/") / relative
        assert restored.read_bytes() == content, name
    status = ok(cli("status"))
    assert '"files"' in status and '"redis"' in status and '"full"' in status


def test_destroyed_data_directory_comes_back_to_the_last_archived_segment(cli: BackupCli, postgres: Postgres) -> None:
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
        conn.execute("INSERT INTO reading_log (student, book) VALUES (42, 'the-last-archived-row')")
    switch_and_wait_for_archive(postgres)
    refused = cli("restore", "--live", "--confirm", STACK)
    assert refused.returncode == 1 and "Postgres is running" in refused.stderr
    postgres.stop()
    shutil.rmtree(postgres.data)
    postgres.data.mkdir(mode=0o700)
    postgres.user.own(postgres.data)
    unconfirmed = cli("restore", "--live")
    assert unconfirmed.returncode == 1 and f"--confirm {STACK}" in unconfirmed.stderr
    assert "restored Postgres over" in ok(cli("restore", "--live", "--confirm", STACK))
    postgres.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
                if conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,):
                    break
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, postgres.server.log()[-3000:]
        time.sleep(0.5)
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reading_log").fetchone() == (5501,)
        assert conn.execute("SELECT student FROM reading_log WHERE book = 'the-last-archived-row'").fetchone() == (42,)


def test_point_in_time_restore_stops_at_the_target(
    cli: BackupCli, postgres: Postgres, environment: Environment
) -> None:
    with psycopg.connect(app_dsn(postgres), autocommit=True) as conn:
        conn.execute("CREATE TABLE pitr_marks (mark text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO pitr_marks (mark) VALUES ('before')")
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        time.sleep(1.5)
        conn.execute("INSERT INTO pitr_marks (mark) VALUES ('after')")
    switch_and_wait_for_archive(postgres)
    into = Path(environment.topo.backup_work_dir) / "restore-pitr"
    ok(cli("restore", "--into", str(into), "--target-time", target.isoformat(sep=" ")))
    run_dir = environment.base / "pitr-run"
    run_dir.mkdir()
    postgres.user.own(run_dir)
    (run_dir / "pg_hba.conf").write_text("local all all peer\n")
    port = free_port()
    server = Server(
        "pitr",
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(into / "postgres"),
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={run_dir}",
            "-c",
            f"hba_file={run_dir / 'pg_hba.conf'}",
            "-c",
            "archive_mode=off",
        ],
        postgres.user,
        run_dir / "log",
        env={**os.environ, **environment.backup_env()},
    ).start()  # recovery fetches WAL from the repository
    try:
        deadline = time.monotonic() + 60
        marks = None
        while time.monotonic() < deadline:
            query = "SELECT string_agg(mark, ',') FROM pitr_marks WHERE NOT pg_is_in_recovery()"
            result = run_as(
                postgres.user,
                [
                    "psql",
                    "-X",
                    "-At",
                    "-h",
                    str(run_dir),
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    environment.settings.database.name,
                    "-c",
                    query,
                ],
            )
            if result.returncode == 0 and result.stdout.strip():
                marks = result.stdout.strip()
                break
            time.sleep(0.5)
        assert marks == "before", server.log()
    finally:
        server.stop(2)


def test_wrong_passphrase_and_missing_repository_fail_clearly(cli: BackupCli, environment: Environment) -> None:
    wrong = cli("status", env_overrides={"PGBACKREST_REPO1_CIPHER_PASS": "not-the-passphrase"})
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: wrong repository passphrase (PGBACKREST_REPO1_CIPHER_PASS)"), wrong.stderr
    wrong_restic = cli("backup", "files", env_overrides={"RESTIC_PASSWORD": "not-the-password"})
    assert wrong_restic.stderr.startswith("error: wrong repository password (RESTIC_PASSWORD)"), wrong_restic.stderr
    services.s3_client(environment, boto3).create_bucket(
        Bucket="stories-empty", CreateBucketConfiguration={"LocationConstraint": environment.topo.backup_repo.s3_region}
    )
    missing = cli("status", env_overrides={"PGBACKREST_REPO1_S3_BUCKET": "stories-empty"})
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no pgBackRest repository (or no backup) for stanza 'stories'"), (
        missing.stderr
    )
    missing_restic = cli("backup", "files", env_overrides={"STORIES_BACKUP_BUCKET": "stories-empty"})
    assert missing_restic.stderr.startswith("error: no restic repository at s3:https://"), missing_restic.stderr
    occupied = Path(environment.topo.backup_work_dir) / "restore-files"
    refused = cli("restore", "--into", str(occupied))
    assert refused.returncode == 1 and "is not empty; nothing was written" in refused.stderr
    unwritable = cli("restore", "--into", str(environment.base / "not-the-backup-users"))
    assert unwritable.returncode == 1 and unwritable.stderr.startswith("error: Permission denied:"), unwritable.stderr


def flip_a_byte(environment: Environment, prefix: str, pick: str) -> tuple[str, bytes]:
    client = services.s3_client(environment, boto3)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=environment.bucket, Prefix=prefix)["Contents"]]
    key = next(k for k in sorted(keys) if re.search(pick, k))
    original = client.get_object(Bucket=environment.bucket, Key=key)["Body"].read()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0x01
    client.put_object(Bucket=environment.bucket, Key=key, Body=bytes(corrupted))
    return key, original


def test_a_flipped_byte_makes_verify_fail_loudly(cli: BackupCli, environment: Environment) -> None:
    ok(cli("verify"))
    client = services.s3_client(environment, boto3)
    for prefix, pick, message in (
        ("pgbackrest/backup/", r"\.(zst|gz)$", "pgBackRest repository is corrupted"),
        ("restic/data/", r".", "restic repository is corrupted"),
    ):
        key, original = flip_a_byte(environment, prefix, pick)
        try:
            failed = cli("verify")
            assert failed.returncode == 1, failed.stdout
            assert message in failed.stderr, failed.stderr
        finally:
            client.put_object(Bucket=environment.bucket, Key=key, Body=original)
    ok(cli("verify"))
