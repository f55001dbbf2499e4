"""The backup operations: what the schedules run and what an operator runs, one function each."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backup.config import BackupJobConfig
from backup.tools import BackupError, explain_pgbackrest, pgbackrest, psql, restic, run

POSTGRES_KINDS = ("full", "diff", "incr")
RESTIC_TAGS = ("files", "redis")
HEARTBEAT_TABLE = "stories_ops.heartbeat"


# --- repositories -------------------------------------------------------------------------------


def ensure_repositories(config: BackupJobConfig) -> None:
    """Create the pgBackRest stanza and the restic repository if they do not exist (both idempotent).
    Runs when the backup service starts; archive_command never creates anything."""
    pgbackrest(config, "stanza-create", timeout=600)
    try:
        restic(config, "cat", "config", timeout=300)
    except BackupError as error:
        if "no restic repository" not in str(error):
            raise
        restic(config, "init", "--repository-version", "2", timeout=300)


# --- backups -----------------------------------------------------------------------------------


def backup_postgres(config: BackupJobConfig, kind: str) -> str:
    if kind not in POSTGRES_KINDS:
        raise BackupError(f"backup type {kind!r}: must be one of {', '.join(POSTGRES_KINDS)}")
    pgbackrest(config, "backup", f"--type={kind}")
    pgbackrest(config, "expire", timeout=3600)
    return f"pgBackRest {kind} backup"


def _restic_backup(config: BackupJobConfig, tag: str, paths: list[str]) -> str:
    restic(config, "backup", "--tag", tag, "--host", config.stack, "--compression", "auto", *paths)
    restic(
        config, "forget", "--tag", tag, "--host", config.stack, "--keep-within", f"{config.retention_days}d", "--prune"
    )
    return f"restic {tag} snapshot of {', '.join(paths)}"


def backup_files(config: BackupJobConfig) -> str:
    paths = [path for path in config.sources.values() if Path(path).exists()]
    if not paths:
        raise BackupError(f"none of the file sources exists: {', '.join(config.sources.values())}")
    return _restic_backup(config, "files", paths)


def _redis_cli(config: BackupJobConfig, *command: str) -> str:
    if "STORIES_REDIS_BACKUP_PASSWORD" not in os.environ:
        raise BackupError("STORIES_REDIS_BACKUP_PASSWORD is not set: cannot authenticate to Redis")
    os.environ["REDISCLI_AUTH"] = os.environ["STORIES_REDIS_BACKUP_PASSWORD"]
    argv = ["redis-cli", "--no-auth-warning", "-h", config.redis_host, "-p", str(config.redis_port), "--user", "backup"]
    answer = run([*argv, *command], timeout=60).strip()
    if answer.startswith(("ERR", "NOAUTH", "WRONGPASS", "NOPERM")):
        raise BackupError(f"Redis refused {' '.join(command)}: {answer}")
    return answer


def backup_redis(config: BackupJobConfig, timeout_seconds: int = 600) -> str:
    """A consistent snapshot: BGSAVE, wait until LASTSAVE moves, then back up the finished dump."""
    before = int(_redis_cli(config, "LASTSAVE"))
    _redis_cli(config, "BGSAVE")
    deadline = time.monotonic() + timeout_seconds
    while int(_redis_cli(config, "LASTSAVE")) <= before:
        if time.monotonic() > deadline:
            raise BackupError(f"Redis BGSAVE did not finish in {timeout_seconds} s")
        time.sleep(0.5)
    dump = Path(config.redis_dir) / "dump.rdb"
    if not dump.exists():
        raise BackupError(f"Redis saved, but {dump} is not there (is the Redis data volume mounted?)")
    return _restic_backup(config, "redis", [str(dump)])


# --- status ------------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def last_successes(config: BackupJobConfig) -> dict[str, datetime]:
    """When each kind last succeeded, read from the repositories themselves (the truth after a restart)."""
    found: dict[str, datetime] = {}
    for stanza in pgbackrest_info(config):
        for item in stanza.get("backup", []):
            stop = datetime.fromtimestamp(item["timestamp"]["stop"], UTC)
            kind = item["type"]
            found[kind] = max(found.get(kind, stop), stop)
    for tag in RESTIC_TAGS:
        snapshots = json.loads(restic(config, "snapshots", "--json", "--tag", tag, "--host", config.stack) or "[]")
        if snapshots:
            found[tag] = max(_parse_time(s["time"]) for s in snapshots)
    return found


def pgbackrest_info(config: BackupJobConfig) -> list[dict[str, Any]]:
    """`pgbackrest info`, which reports a broken repository inside its JSON rather than by exit code."""
    info: list[dict[str, Any]] = json.loads(
        pgbackrest(config, "info", "--output=json", timeout=600) or "[]", strict=False
    )
    for stanza in info:
        status = stanza.get("status", {})
        code = status.get("code", 0)
        details = [str(status.get("message", ""))]
        details += [str(repo.get("status", {}).get("message", "")) for repo in stanza.get("repo", [])]
        message = "; ".join(detail for detail in details if detail)
        if code in (1, 3):  # missing stanza path, missing stanza data
            raise BackupError(f"no pgBackRest repository (or no backup) for stanza '{config.stanza}': {message}")
        if code == 99:
            explanation = explain_pgbackrest(message, config)
            detail = message.splitlines()[0][:200] if message else "unknown"
            raise BackupError(f"{explanation}: {detail}" if explanation else f"pgBackRest info: {detail}")
    return info


@dataclass(frozen=True)
class WalStatus:
    failing: bool
    last_archived_age_seconds: float | None


def wal_status(config: BackupJobConfig) -> WalStatus:
    row = psql(
        config.pg_socket_dir,
        config.pg_port,
        "postgres",
        "SELECT coalesce(extract(epoch FROM now() - last_archived_time)::text, ''), "
        "(last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time))"
        " FROM pg_stat_archiver",
    )[0]
    return WalStatus(failing=row[1] == "t", last_archived_age_seconds=float(row[0]) if row[0] else None)


def heartbeat(config: BackupJobConfig) -> None:
    """A write every few seconds, so that an idle database still fills WAL and archive_timeout switches and
    archives a segment: the RPO stays bounded by it."""
    psql(config.pg_socket_dir, config.pg_port, "postgres", f"UPDATE {HEARTBEAT_TABLE} SET at = now() WHERE id = 1")


# --- verification ------------------------------------------------------------------------------


def verify(config: BackupJobConfig) -> str:
    """Archiving works (check), every backup and WAL file matches its checksum (verify), and the restic
    repository's structure and a share of its data are intact (check --read-data-subset)."""
    pgbackrest(config, "check", timeout=600)
    report = pgbackrest(config, "verify", "--output=text", timeout=6 * 3600)
    # pgBackRest 2.45 ends verify successfully whatever it found; the report says what it found.
    if re.search(r"^status: error", report, re.MULTILINE):
        invalid = [
            line.strip()
            for line in report.splitlines()
            if "status: invalid" in line or re.search(r"(missing|invalid|other): [1-9]", line)
        ]
        raise BackupError(f"the pgBackRest repository is corrupted: {'; '.join(invalid)}")
    restic(config, "check", f"--read-data-subset={config.verify_read_data_percent}%")
    return "pgBackRest check and verify, restic check passed"


# --- restores ----------------------------------------------------------------------------------


def _target(target_time: str | None, target_lsn: str | None = None) -> list[str]:
    """Recovery to a time or a WAL position ends by promoting; without one, Postgres replays every archived
    WAL segment and promotes at its end."""
    if target_lsn:
        return ["--type=lsn", f"--target={target_lsn}", "--target-action=promote"]
    return ["--type=time", f"--target={target_time}", "--target-action=promote"] if target_time else []


def restore_postgres(
    config: BackupJobConfig, target_dir: str, target_time: str | None = None, target_lsn: str | None = None
) -> float:
    """Restore into `target_dir` (never the running database's), to the latest archived WAL, to
    `target_time` or to `target_lsn`; the restored server will not archive. Returns the seconds it took."""
    started = time.monotonic()
    options = [f"--pg1-path={target_dir}", "--archive-mode=off", *_target(target_time, target_lsn)]
    pgbackrest(config, "restore", *options)
    return time.monotonic() - started


def restore_files(config: BackupJobConfig, target_dir: str, tag: str = "files", snapshot: str = "latest") -> str:
    restic(config, "restore", snapshot, "--tag", tag, "--host", config.stack, "--target", target_dir)
    return target_dir


def _postgres_is_running(config: BackupJobConfig) -> bool:
    return (Path(config.pg_data_dir) / "postmaster.pid").exists()


def restore_live(config: BackupJobConfig, target_time: str | None) -> float:
    """Restore over the stack's own data directory: only with Postgres stopped."""
    if _postgres_is_running(config):
        raise BackupError(f"Postgres is running on {config.pg_data_dir} (postmaster.pid): stop it first")
    options = ["--delta", *_target(target_time)]
    started = time.monotonic()
    pgbackrest(config, "restore", *options)
    return time.monotonic() - started


# --- the drill -----------------------------------------------------------------------------------


@dataclass
class TableCheck:
    table: str
    source_rows: int
    restored_rows: int | None
    matches: bool


@dataclass
class DrillReport:
    rto_seconds: float
    rpo_seconds: float | None
    newest_archived: datetime | None
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.tables) and all(table.matches for table in self.tables)


FINGERPRINT = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
ORDER BY 1
"""


def fingerprint(socket_dir: str, port: int, database: str) -> tuple[str, dict[str, tuple[int, str]]]:
    """Row count and an order-independent content checksum of every table of a database, all read by one
    statement (one snapshot, so the tables agree with each other), and the WAL position they were read at."""
    tables = [row[0] for row in psql(socket_dir, port, database, FINGERPRINT)]
    per_table = [
        f"(SELECT count(*) || ' ' || coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {table} t)" for table in tables
    ]
    (row,) = psql(socket_dir, port, database, f"SELECT {', '.join(['pg_current_wal_insert_lsn()', *per_table])}")
    lsn, values = row[0], row[1:]
    result = {}
    for table, value in zip(tables, values, strict=True):
        rows, checksum = value.split(" ")
        result[table] = (int(rows), checksum)
    return lsn, result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Settings a restored server must not set lower than the server the WAL came from.
HOT_STANDBY_MINIMUMS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def _source_minimums(config: BackupJobConfig) -> list[str]:
    names = ", ".join(f"'{name}'" for name in HOT_STANDBY_MINIMUMS)
    rows = psql(
        config.pg_socket_dir,
        config.pg_port,
        "postgres",
        f"SELECT name, setting FROM pg_settings WHERE name IN ({names})",
    )
    return [argument for name, value in rows for argument in ("-c", f"{name}={value}")]


def _start_throwaway(config: BackupJobConfig, data_dir: Path, run_dir: Path, port: int) -> subprocess.Popen[bytes]:
    hba = run_dir / "pg_hba.conf"
    hba.write_text("local all all peer\n")
    settings = {
        "port": str(port),
        "listen_addresses": "",
        "unix_socket_directories": str(run_dir),
        "hba_file": str(hba),
        "archive_mode": "off",  # the throwaway must never push WAL into the stack's repository
        "shared_preload_libraries": "",
        "shared_buffers": "64MB",
    }
    options = [argument for name, value in settings.items() for argument in ("-c", f"{name}={value}")]
    argv = [f"{config.pg_bin_dir}/postgres", "-D", str(data_dir), *options, *_source_minimums(config)]
    log = (run_dir / "postgres.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def _wait_until_promoted(
    config: BackupJobConfig, run_dir: Path, port: int, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (run_dir / "postgres.log").read_text(errors="replace")[-2000:]
            raise BackupError(f"the restored Postgres exited during recovery: {log}")
        try:
            if psql(str(run_dir), port, "postgres", "SELECT pg_is_in_recovery()") == [["f"]]:
                return
        except BackupError:
            pass
        time.sleep(0.5)
    raise BackupError(f"the restored Postgres did not finish recovery in {timeout:.0f} s")


def drill(config: BackupJobConfig, target_time: str | None = None) -> DrillReport:
    """Restore the latest backup into a throwaway Postgres, compare every table of the app database with
    the source, and measure RTO (wall time until the restored server accepts queries) and RPO (the age of
    the newest archived WAL when the drill starts: what a loss of the database's disk then would lose; the
    service's heartbeat keeps WAL moving, so it stays under archive_timeout plus the push).

    The source is read at one WAL position, which pgBackRest's `check` then archives (it switches WAL and
    waits for the segment), and the restore stops exactly there: tables written meanwhile (the app keeps
    writing) still compare equal. With `target_time` the restore stops at that time instead. The running
    database is only read (but for the WAL switch)."""
    age = wal_status(config).last_archived_age_seconds
    newest_archived = datetime.now(UTC) - timedelta(seconds=age) if age is not None else None
    lsn, source = fingerprint(config.pg_socket_dir, config.pg_port, config.database)
    target_lsn = None
    if target_time is None:
        pgbackrest(config, "check", timeout=600)
        target_lsn = lsn
    work = Path(tempfile.mkdtemp(prefix="drill-", dir=config.work_dir))
    data_dir, run_dir = work / "data", work / "run"
    data_dir.mkdir(mode=0o700)
    run_dir.mkdir()
    started = time.monotonic()
    process = None
    try:
        restore_postgres(config, str(data_dir), target_time, target_lsn)
        port = _free_port()
        process = _start_throwaway(config, data_dir, run_dir, port)
        _wait_until_promoted(config, run_dir, port, process, timeout=config.rto_minutes * 60 * 2)
        rto = time.monotonic() - started
        _, restored = fingerprint(str(run_dir), port, config.database)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    report = DrillReport(rto, age, newest_archived)
    for table, (rows, checksum) in source.items():
        found = restored.get(table)
        report.tables.append(TableCheck(table, rows, found[0] if found else None, found == (rows, checksum)))
    return report
