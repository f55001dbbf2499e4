"""`make status STACK=<stack> [FORMAT=table|json]`: one screen of a deployed stack, read in ten seconds.

    python -m tools.status --stack prod [--format table|json]

Every container (state, health, restarts, uptime, memory against its limit), PgBouncer's pools,
Postgres (connections by state against max_connections, size, WAL archiving, the longest transaction),
Redis (memory against maxmemory, evictions, hit rate), the last success of each backup kind against its
interval, and the alerts Alertmanager has firing. Everything is gathered through the docker CLI on the
stack's Docker host, inside the stack's own containers, as the least-privileged role that can read it:
`stories_monitor` (pg_monitor) for Postgres, PgBouncer's stats user, Redis's `exporter` ACL user,
`stories-backup status` in the backup container, Alertmanager's API from its own container.

Three layers: collection (a `Runner` and an `Engine`, tools/ops.py), parsing and judging (pure
functions of the commands' output), rendering (a table, coloured when stdout is a terminal, or JSON).
The exit status is 1 when something needs a person (a finding at level "crit"), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from components.container import LABEL_PREFIX
from model.settings import Settings
from model.topology import ROLES, Topology, container_topology
from tools.ops import (
    CommandError,
    Credentials,
    DockerCli,
    DockerCredentials,
    Engine,
    Runner,
    UsageError,
    check_format,
    fail,
    first_line,
    load_stack,
    monitor_conninfo,
    query_json,
)

OK, WARN, CRIT = "ok", "warn", "crit"
MEMORY_LIMIT_SHARE = 0.9  # a container above 90% of its memory limit is close to the OOM killer
CONNECTIONS_SHARE = 0.8  # Postgres connections above 80% of max_connections
REDIS_MEMORY_SHARE = 0.9
RECENT_RESTART = timedelta(minutes=10)  # a restart this recent may be a crash loop in progress
LONG_TRANSACTION = timedelta(minutes=5)
ALERTMANAGER_PORT = 9093  # inside its container (components/monitoring.py)
APPLICATION = "stories-status"
# Containers that are not services: config holders (never started) and the e2e layer's outside stand-ins.
# Any other role marks a one-shot (the app's migration, the volume owner): it runs to its exit.
NOT_SERVICES = ("config", "outside-stand-in")


@dataclass(frozen=True)
class Finding:
    level: str  # ok, warn or crit; crit is what needs a person
    section: str
    subject: str
    message: str


# ---------------------------------------------------------------------------------------------------
# Parsing: the commands' output into plain data


_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """`docker stats` sizes: '25.5MiB', '796 KiB', '1.045 GiB', '0B'."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]+)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_time(text: str | None) -> datetime | None:
    """Docker's and Postgres's timestamps (RFC 3339 with up to nanoseconds); None for Docker's zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(cleaned)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class ContainerState:
    name: str  # without the stack's prefix: postgres, app-1, ...
    service: str
    replica: int | None
    state: str  # running, restarting, exited, created, paused, dead
    health: str | None  # healthy, unhealthy, starting; None without a healthcheck
    restarts: int
    started_at: datetime | None
    exit_code: int | None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    health_output: str | None = None
    role: str | None = None  # one-shot, volume-owner, ...: runs to its exit

    def uptime(self, now: datetime) -> timedelta | None:
        if self.state != "running" or self.started_at is None:
            return None
        return now - self.started_at


def parse_stats(text: str) -> dict[str, int]:
    """`docker stats --no-stream --format '{{.Name}}\\t{{.MemUsage}}'`: memory in use by container name."""
    usage: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, memory = line.partition("\t")
        used = memory.split("/")[0]
        try:
            usage[name.strip().lstrip("/")] = parse_size(used)
        except ValueError:
            continue  # a container that stopped between inspect and stats shows "--"
    return usage


def parse_containers(inspected: str, stats: str, stack: str) -> list[ContainerState]:
    """`docker inspect` of the stack's containers and their `docker stats`; config containers and the e2e
    layer's stand-ins are not services and are left out, one-shots are kept with their role."""
    usage = parse_stats(stats)
    rows = []
    for item in json.loads(inspected) or []:
        labels = (item.get("Config") or {}).get("Labels") or {}
        role = labels.get(f"{LABEL_PREFIX}.role")
        if role in NOT_SERVICES:
            continue
        full_name = str(item["Name"]).lstrip("/")
        state = item.get("State") or {}
        health = state.get("Health") or None
        log = (health or {}).get("Log") or []
        replica = labels.get(f"{LABEL_PREFIX}.replica")
        status = str(state.get("Status", "unknown"))
        limit = int((item.get("HostConfig") or {}).get("Memory") or 0)
        rows.append(
            ContainerState(
                name=full_name.removeprefix(f"{stack}-"),
                service=str(labels.get(f"{LABEL_PREFIX}.service", full_name)),
                replica=int(replica) if replica else None,
                state=status,
                health=str(health["Status"]) if health else None,
                restarts=int(item.get("RestartCount") or 0),
                started_at=parse_time(state.get("StartedAt")) if status in ("running", "restarting") else None,
                exit_code=int(state["ExitCode"]) if status in ("exited", "dead") and "ExitCode" in state else None,
                memory_bytes=usage.get(full_name),
                memory_limit_bytes=limit or None,
                health_output=first_line(str(log[-1].get("Output", "")), 120) if log else None,
                role=str(role) if role else None,
            )
        )
    return sorted(rows, key=lambda row: _service_order(row.name))


def _service_order(name: str) -> tuple[int, str]:
    order = ("nginx", "certbot", "app", "pgbouncer", "postgres", "redis", "backup", "scaler")
    for index, prefix in enumerate(order):
        if name == prefix or (name.startswith(f"{prefix}-") and not name.endswith("exporter")):
            return index, name
    return len(order), name


@dataclass
class Pool:
    database: str
    user: str
    clients_active: int
    clients_waiting: int
    servers_active: int
    servers_idle: int
    max_wait_seconds: float


def parse_pools(text: str) -> list[Pool]:
    """`SHOW POOLS` as CSV (psql --csv). PgBouncer's own admin pseudo-database is left out."""
    pools = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["database"] == "pgbouncer":
            continue
        wait = float(row.get("maxwait") or 0) + float(row.get("maxwait_us") or 0) / 1e6
        pools.append(
            Pool(
                database=row["database"],
                user=row["user"],
                clients_active=int(row["cl_active"]),
                clients_waiting=int(row["cl_waiting"]),
                servers_active=int(row["sv_active"]),
                servers_idle=int(row["sv_idle"]),
                max_wait_seconds=wait,
            )
        )
    return pools


@dataclass
class PostgresState:
    database: str
    size_bytes: int
    max_connections: int
    connections: dict[str, int]  # by state
    archive_mode: str
    archive_timeout_seconds: int
    archived_count: int
    failed_count: int
    last_archived_wal: str | None
    last_archived_age_seconds: float | None
    last_failed_age_seconds: float | None
    archive_failing: bool
    longest_transaction: dict[str, Any] | None  # pid, user, application, state, seconds

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())


POSTGRES_SQL = """
SELECT json_build_object(
  'database', current_database(),
  'size_bytes', pg_database_size(current_database()),
  'max_connections', current_setting('max_connections')::int,
  'connections', (
    SELECT coalesce(json_object_agg(state, n), '{}'::json) FROM (
      SELECT coalesce(state, 'unknown') AS state, count(*) AS n FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1) AS by_state),
  'archive_mode', current_setting('archive_mode'),
  'archive_timeout_seconds', (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'),
  'archiver', (SELECT json_build_object(
      'archived_count', archived_count,
      'failed_count', failed_count,
      'last_archived_wal', last_archived_wal,
      'last_archived_age_seconds', extract(epoch FROM now() - last_archived_time),
      'last_failed_age_seconds', extract(epoch FROM now() - last_failed_time),
      'failing', last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time))
    FROM pg_stat_archiver),
  'longest_transaction', (SELECT json_build_object(
      'pid', pid, 'user', usename, 'application', application_name, 'state', state,
      'seconds', extract(epoch FROM now() - xact_start))
    FROM pg_stat_activity
    WHERE xact_start IS NOT NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid()
    ORDER BY xact_start LIMIT 1)
)
"""


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def parse_postgres(document: Mapping[str, Any]) -> PostgresState:
    archiver = document.get("archiver") or {}
    longest = document.get("longest_transaction")
    if longest is not None:
        longest = {**longest, "seconds": float(longest["seconds"])}
    return PostgresState(
        database=str(document["database"]),
        size_bytes=int(document["size_bytes"]),
        max_connections=int(document["max_connections"]),
        connections={str(state): int(count) for state, count in (document.get("connections") or {}).items()},
        archive_mode=str(document["archive_mode"]),
        archive_timeout_seconds=int(document["archive_timeout_seconds"]),
        archived_count=int(archiver.get("archived_count") or 0),
        failed_count=int(archiver.get("failed_count") or 0),
        last_archived_wal=archiver.get("last_archived_wal"),
        last_archived_age_seconds=_float(archiver.get("last_archived_age_seconds")),
        last_failed_age_seconds=_float(archiver.get("last_failed_age_seconds")),
        archive_failing=bool(archiver.get("failing")),
        longest_transaction=longest,
    )


@dataclass
class RedisState:
    version: str
    used_memory: int
    maxmemory: int
    policy: str
    evicted_keys: int
    hits: int
    misses: int
    clients: int
    last_bgsave_status: str

    @property
    def hit_rate(self) -> float | None:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


_REDIS_ERRORS = ("NOAUTH", "WRONGPASS", "NOPERM", "ERR ", "(error)")


def parse_redis_info(text: str) -> RedisState:
    """`INFO` as redis-cli prints it (key:value lines, `# Section` headers, CRLF). redis-cli exits 0 on an
    error reply, so an error is recognised here."""
    stripped = text.strip()
    if not stripped or stripped.startswith(_REDIS_ERRORS):
        raise ValueError(f"Redis answered: {first_line(stripped) or 'nothing'}")
    fields: dict[str, str] = {}
    for line in stripped.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value
    return RedisState(
        version=fields.get("redis_version", "?"),
        used_memory=int(fields["used_memory"]),
        maxmemory=int(fields.get("maxmemory", "0")),
        policy=fields.get("maxmemory_policy", "?"),
        evicted_keys=int(fields.get("evicted_keys", "0")),
        hits=int(fields.get("keyspace_hits", "0")),
        misses=int(fields.get("keyspace_misses", "0")),
        clients=int(fields.get("connected_clients", "0")),
        last_bgsave_status=fields.get("rdb_last_bgsave_status", "ok"),
    )


@dataclass
class BackupKind:
    kind: str
    last_success: datetime | None
    interval: timedelta
    late_after: timedelta

    def age(self, now: datetime) -> timedelta | None:
        return None if self.last_success is None else now - self.last_success

    def late(self, now: datetime) -> bool:
        age = self.age(now)
        return age is None or age > self.late_after


@dataclass
class BackupState:
    now: datetime
    kinds: list[BackupKind]


def parse_backup_status(text: str, settings: Settings) -> BackupState:
    """`stories-backup status`: the newest success of each pgBackRest type and restic tag, read from the
    repositories. A full backup also counts as a differential and an incremental (the schedule's chain,
    backup/service.py), so each type is judged by the newest backup at least as complete."""
    document = json.loads(text)
    found = {kind: parse_time(when) for kind, when in (document.get("last_success") or {}).items()}
    now = parse_time(document.get("now")) or datetime.now(UTC)
    intervals = settings.backup.postgres
    files = timedelta(minutes=settings.backup.files.interval_minutes)
    late = settings.backup.late_factor

    def newest(*kinds: str) -> datetime | None:
        times = [when for kind in kinds if (when := found.get(kind)) is not None]
        return max(times) if times else None

    rows = [
        ("postgres full", newest("full"), timedelta(hours=intervals.full_interval_hours)),
        ("postgres diff", newest("full", "diff"), timedelta(hours=intervals.diff_interval_hours)),
        ("postgres incr", newest("full", "diff", "incr"), timedelta(hours=intervals.incr_interval_hours)),
        ("files", newest("files"), files),
        ("redis", newest("redis"), files),
    ]
    return BackupState(now, [BackupKind(kind, last, interval, interval * late) for kind, last, interval in rows])


@dataclass
class Alert:
    name: str
    severity: str
    summary: str
    since: datetime | None
    labels: dict[str, str] = field(default_factory=dict)


_ALERT_LABELS_SHOWN = ("service", "job", "instance", "kind", "container", "name")


def parse_alerts(text: str) -> list[Alert]:
    """Alertmanager's `GET /api/v2/alerts?active=true&silenced=false&inhibited=false`."""
    alerts = []
    for item in json.loads(text) or []:
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        annotations = item.get("annotations") or {}
        alerts.append(
            Alert(
                name=labels.get("alertname", "?"),
                severity=labels.get("severity", "-"),
                summary=first_line(str(annotations.get("summary") or annotations.get("description") or ""), 160),
                since=parse_time(item.get("startsAt")),
                labels={key: labels[key] for key in _ALERT_LABELS_SHOWN if key in labels},
            )
        )
    return sorted(alerts, key=lambda alert: (alert.severity != "critical", alert.name))


# ---------------------------------------------------------------------------------------------------
# Collection: the commands, run in the stack's containers


def pgbouncer_command(topo: Topology) -> list[str]:
    """PgBouncer's console as the stats user, over TLS on loopback; the password from $PGPASSFILE, which
    the container already has (its healthcheck logs in the same way)."""
    return [
        "psql",
        "-X",
        "-h",
        "127.0.0.1",
        "-p",
        str(topo.pgbouncer_port),
        "-U",
        ROLES["pgbouncer_stats"],
        "-d",
        "pgbouncer",
        "--csv",
        "-c",
        "SHOW POOLS",
    ]


def redis_command(topo: Topology) -> list[str]:
    """INFO as the `exporter` ACL user (its password arrives as REDISCLI_AUTH)."""
    return [
        "redis-cli",
        "--no-auth-warning",
        "-h",
        "127.0.0.1",
        "-p",
        str(topo.redis_port),
        "--user",
        "exporter",
        "INFO",
    ]


def alerts_command(port: int = ALERTMANAGER_PORT) -> list[str]:
    url = f"http://127.0.0.1:{port}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    return ["wget", "-q", "-O", "-", url]


BACKUP_STATUS_COMMAND = ["stories-backup", "status"]


def collect_pools(runner: Runner, topo: Topology) -> list[Pool]:
    return parse_pools(runner.run("pgbouncer", pgbouncer_command(topo)).stdout)


def collect_postgres(runner: Runner, settings: Settings, topo: Topology, credentials: Credentials) -> PostgresState:
    document = query_json(
        runner, monitor_conninfo(settings, topo), credentials.monitor_password(), POSTGRES_SQL, APPLICATION
    )
    if not isinstance(document, dict):
        raise ValueError("Postgres gave no status document")
    return parse_postgres(document)


def collect_redis(runner: Runner, topo: Topology, credentials: Credentials) -> RedisState:
    password = credentials.redis_exporter_password()
    return parse_redis_info(runner.run("redis", redis_command(topo), env={"REDISCLI_AUTH": password}).stdout)


def collect_backups(runner: Runner, settings: Settings) -> BackupState:
    return parse_backup_status(runner.run("backup", BACKUP_STATUS_COMMAND, timeout=300).stdout, settings)


def collect_alerts(runner: Runner, port: int = ALERTMANAGER_PORT) -> list[Alert]:
    return parse_alerts(runner.run("alertmanager", alerts_command(port)).stdout)


def collect_containers(engine: Engine) -> list[ContainerState]:
    names = engine.docker(
        "ps", "-a", "--filter", f"label={LABEL_PREFIX}.stack={engine.stack}", "--format", "{{.Names}}"
    ).split()
    if not names:
        return []
    inspected = engine.docker("inspect", *names)
    running = [
        str(item["Name"]).lstrip("/") for item in json.loads(inspected) if (item.get("State") or {}).get("Running")
    ]
    stats = engine.docker("stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", *running) if running else ""
    return parse_containers(inspected, stats, engine.stack)


@dataclass
class Report:
    stack: str
    at: datetime
    containers: list[ContainerState] | None = None
    pools: list[Pool] | None = None
    postgres: PostgresState | None = None
    redis: RedisState | None = None
    backups: BackupState | None = None
    alerts: list[Alert] | None = None
    errors: dict[str, str] = field(default_factory=dict)  # section -> why it could not be read
    skipped: dict[str, str] = field(default_factory=dict)  # section -> why the stack has none


SECTIONS = ("containers", "pgbouncer", "postgres", "redis", "backups", "alerts")


def gather(
    settings: Settings,
    stack: str,
    engine: Engine | None,
    runner: Runner,
    credentials: Credentials,
    topo: Topology | None = None,
    sections: Sequence[str] = SECTIONS,
    alertmanager_port: int = ALERTMANAGER_PORT,
) -> Report:
    """Every section, read concurrently; a section that cannot be read becomes an error, not an exit."""
    topo = topo or container_topology(settings)
    report = Report(stack, datetime.now(UTC))
    jobs: dict[str, Callable[[], Any]] = {
        "pgbouncer": lambda: collect_pools(runner, topo),
        "postgres": lambda: collect_postgres(runner, settings, topo, credentials),
        "redis": lambda: collect_redis(runner, topo, credentials),
        "backups": lambda: collect_backups(runner, settings),
        "alerts": lambda: collect_alerts(runner, alertmanager_port),
    }
    if engine is not None:
        jobs["containers"] = lambda: collect_containers(engine)
    if not settings.monitoring.enabled:
        report.skipped["alerts"] = "monitoring.enabled is false: no Alertmanager"
    wanted = {name: job for name, job in jobs.items() if name in sections and name not in report.skipped}
    with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
        futures = {name: pool.submit(job) for name, job in wanted.items()}
        for name, future in futures.items():
            try:
                value = future.result()
            except (CommandError, ValueError, KeyError, TypeError) as error:
                report.errors[name] = first_line(str(error)) or type(error).__name__
                continue
            setattr(report, {"pgbouncer": "pools"}.get(name, name), value)
    return report


# ---------------------------------------------------------------------------------------------------
# Judging: what needs a person


def duration(value: timedelta | float | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f}{unit}" if unit == "B" or amount >= 100 else f"{amount:.1f}{unit}"
        amount /= 1024
    return f"{amount:.1f}GiB"


def judge_containers(rows: Sequence[ContainerState], settings: Settings, now: datetime) -> list[Finding]:
    findings = []
    floor = settings.app.replicas
    for row in rows:

        def add(level: str, message: str, row: ContainerState = row) -> None:
            findings.append(Finding(level, "containers", row.name, message))

        if row.role is not None:  # a one-shot: what counts is how its run ended
            if row.state in ("exited", "dead") and row.exit_code not in (None, 0):
                add(CRIT, f"the {row.role} run failed (exit code {row.exit_code}): make logs SERVICE={row.name}")
            continue
        if row.state == "running":
            if row.health == "unhealthy":
                add(CRIT, f"unhealthy: {row.health_output or 'the healthcheck fails'}")
            elif row.health == "starting":
                add(WARN, "starting: the healthcheck has not passed yet")
            uptime = row.uptime(now)
            if row.restarts and uptime is not None and uptime < RECENT_RESTART:
                add(CRIT, f"restarted {row.restarts}x, the last {duration(uptime)} ago")
            elif row.restarts:
                add(WARN, f"restarted {row.restarts}x (running for {duration(uptime)})")
            if row.memory_bytes is not None and row.memory_limit_bytes:
                share = row.memory_bytes / row.memory_limit_bytes
                if share > MEMORY_LIMIT_SHARE:
                    add(
                        CRIT,
                        f"memory {size(row.memory_bytes)} of {size(row.memory_limit_bytes)} ({share:.0%}): "
                        "near its limit",
                    )
        elif row.state in ("exited", "created") and row.replica is not None and row.replica > floor:
            if not settings.scaling.enabled:
                add(WARN, f"stopped replica above app.replicas ({floor}) and no scaler to start it")
        elif row.state == "restarting":
            add(CRIT, f"restarting (restarted {row.restarts}x)")
        else:
            code = f", exit code {row.exit_code}" if row.exit_code is not None else ""
            add(CRIT, f"{row.state}{code}: not running")
    return findings


def judge_pools(pools: Sequence[Pool]) -> list[Finding]:
    return [
        Finding(
            CRIT,
            "pgbouncer",
            f"{pool.database}/{pool.user}",
            f"{pool.clients_waiting} client(s) waiting for a server connection (max wait {pool.max_wait_seconds:.1f}s)",
        )
        for pool in pools
        if pool.clients_waiting > 0
    ]


def wal_limit_seconds(state: PostgresState, settings: Settings) -> float:
    return state.archive_timeout_seconds * settings.backup.late_factor


def judge_postgres(state: PostgresState, settings: Settings) -> list[Finding]:
    findings = []

    def add(level: str, subject: str, message: str) -> None:
        findings.append(Finding(level, "postgres", subject, message))

    total = state.total_connections
    if total > CONNECTIONS_SHARE * state.max_connections:
        add(
            CRIT,
            "connections",
            f"{total} of max_connections {state.max_connections} ({total / state.max_connections:.0%})",
        )
    if state.archive_mode != "off":
        limit = wal_limit_seconds(state, settings)
        if state.archive_failing:
            add(
                CRIT,
                "wal archiving",
                f"failing: last failure {duration(state.last_failed_age_seconds)} ago, {state.failed_count} failures",
            )
        if state.last_archived_age_seconds is None:
            if not state.archive_failing:
                add(WARN, "wal archiving", "no WAL segment archived yet")
        elif state.last_archived_age_seconds > limit:
            add(
                CRIT,
                "wal archiving",
                f"last segment archived {duration(state.last_archived_age_seconds)} ago, over archive_timeout "
                f"{state.archive_timeout_seconds}s x backup.lateFactor {settings.backup.late_factor:g}",
            )
    longest = state.longest_transaction
    if longest is not None and longest["seconds"] > LONG_TRANSACTION.total_seconds():
        add(
            WARN,
            "transaction",
            f"open for {duration(longest['seconds'])} (pid {longest['pid']}, {longest['user']}, {longest['state']})",
        )
    return findings


def judge_redis(state: RedisState) -> list[Finding]:
    findings = []
    if state.maxmemory == 0:
        findings.append(Finding(WARN, "redis", "memory", "no maxmemory: Redis may grow until the container's limit"))
    elif state.used_memory > REDIS_MEMORY_SHARE * state.maxmemory:
        level = CRIT if state.policy == "noeviction" else WARN
        consequence = "writes will be refused" if level == CRIT else f"evicting keys ({state.policy})"
        findings.append(
            Finding(
                level,
                "redis",
                "memory",
                f"{size(state.used_memory)} of maxmemory {size(state.maxmemory)}: {consequence}",
            )
        )
    if state.last_bgsave_status != "ok":
        findings.append(Finding(CRIT, "redis", "persistence", f"the last BGSAVE {state.last_bgsave_status}"))
    return findings


def judge_backups(state: BackupState) -> list[Finding]:
    findings = []
    for kind in state.kinds:
        if kind.last_success is None:
            findings.append(Finding(CRIT, "backups", kind.kind, "no successful backup in the repository"))
        elif kind.late(state.now):
            findings.append(
                Finding(
                    CRIT,
                    "backups",
                    kind.kind,
                    f"last success {duration(kind.age(state.now))} ago, over {duration(kind.late_after)} "
                    f"(interval {duration(kind.interval)} x backup.lateFactor)",
                )
            )
    return findings


def judge_alerts(alerts: Sequence[Alert]) -> list[Finding]:
    return [
        Finding(CRIT, "alerts", alert.name, f"firing ({alert.severity}): {alert.summary or 'no summary'}")
        for alert in alerts
    ]


def judge(report: Report, settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    if report.containers is not None:
        if not report.containers:
            findings.append(Finding(CRIT, "containers", report.stack, "no container of this stack on its Docker host"))
        findings += judge_containers(report.containers, settings, report.at)
    if report.pools is not None:
        findings += judge_pools(report.pools)
    if report.postgres is not None:
        findings += judge_postgres(report.postgres, settings)
    if report.redis is not None:
        findings += judge_redis(report.redis)
    if report.backups is not None:
        findings += judge_backups(report.backups)
    if report.alerts is not None:
        findings += judge_alerts(report.alerts)
    findings += [Finding(CRIT, section, section, f"could not be read: {why}") for section, why in report.errors.items()]
    return findings


def needs_a_person(findings: Sequence[Finding]) -> bool:
    return any(finding.level == CRIT for finding in findings)


# ---------------------------------------------------------------------------------------------------
# Rendering


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def as_json(report: Report, findings: Sequence[Finding]) -> dict[str, Any]:
    """The document FORMAT=json prints; every time as ISO 8601, every duration in seconds."""
    containers = None
    if report.containers is not None:
        containers = [{**asdict(row), "uptime_seconds": _jsonable(row.uptime(report.at))} for row in report.containers]
    postgres = None
    if report.postgres is not None:
        postgres = {**asdict(report.postgres), "total_connections": report.postgres.total_connections}
    redis = None
    if report.redis is not None:
        redis = {**asdict(report.redis), "hit_rate": report.redis.hit_rate}
    backups = None
    if report.backups is not None:
        backups = {
            "now": report.backups.now,
            "kinds": [
                {
                    **asdict(kind),
                    "age_seconds": _jsonable(kind.age(report.backups.now)),
                    "late": kind.late(report.backups.now),
                }
                for kind in report.backups.kinds
            ],
        }
    document = {
        "stack": report.stack,
        "at": report.at,
        "needs_a_person": needs_a_person(findings),
        "containers": containers,
        "pgbouncer": None if report.pools is None else {"pools": [asdict(pool) for pool in report.pools]},
        "postgres": postgres,
        "redis": redis,
        "backups": backups,
        "alerts": None if report.alerts is None else [asdict(alert) for alert in report.alerts],
        "errors": report.errors,
        "skipped": report.skipped,
        "findings": [asdict(finding) for finding in findings],
    }
    result: dict[str, Any] = _jsonable(document)
    return result


_COLOURS = {OK: "32", WARN: "33", CRIT: "31"}


class Paint:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, level: str, text: str) -> str:
        return f"\x1b[{_COLOURS[level]}m{text}\x1b[0m" if self.colour else text

    def bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.colour else text


def _table(rows: Sequence[Sequence[str]], levels: Sequence[str], paint: Paint, indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell, each row coloured by its level (the header plain)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        text = indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        lines.append(text if index == 0 else paint(levels[index - 1], text))
    return lines


def _worst(findings: Sequence[Finding]) -> str:
    levels = {finding.level for finding in findings}
    return CRIT if CRIT in levels else WARN if WARN in levels else OK


def _of(findings: Sequence[Finding], section: str, subject: str | None = None) -> list[Finding]:
    return [f for f in findings if f.section == section and (subject is None or f.subject == subject)]


def render_table(report: Report, findings: Sequence[Finding], settings: Settings, colour: bool) -> str:
    paint = Paint(colour)
    lines = []
    crit = [finding for finding in findings if finding.level == CRIT]
    verdict = paint(CRIT, f"{len(crit)} thing(s) need a person") if crit else paint(OK, "nothing needs a person")
    lines.append(paint.bold(f"1001 Stories {report.stack}") + f"  {report.at:%Y-%m-%d %H:%M:%S} UTC  {verdict}")

    def header(section: str, title: str) -> None:
        lines.append("")
        lines.append(paint.bold(title))
        if section in report.errors:
            lines.append(paint(CRIT, f"  could not be read: {report.errors[section]}"))
        if section in report.skipped:
            lines.append(f"  {report.skipped[section]}")

    header("containers", "Containers")
    if report.containers:
        rows = [["container", "state", "health", "restarts", "up", "memory / limit"]]
        levels = []
        for row in report.containers:
            memory = "-"
            if row.memory_bytes is not None:
                memory = f"{size(row.memory_bytes)} / {size(row.memory_limit_bytes)}"
                if row.memory_limit_bytes:
                    memory += f" ({row.memory_bytes / row.memory_limit_bytes:.0%})"
            state = row.state
            if row.state in ("exited", "created") and row.replica is not None and row.replica > settings.app.replicas:
                state = f"{row.state} (standby)"
            elif row.role is not None:
                state = f"{row.state} ({row.role})"
            rows.append(
                [
                    row.name,
                    state,
                    (row.health or "-") if row.state == "running" else "-",
                    str(row.restarts),
                    duration(row.uptime(report.at)),
                    memory,
                ]
            )
            levels.append(_worst(_of(findings, "containers", row.name)))
        lines += _table(rows, levels, paint)

    header("pgbouncer", "PgBouncer pools")
    if report.pools is not None:
        rows = [["database/user", "clients active", "waiting", "servers active", "idle", "max wait"]]
        levels = []
        for pool in report.pools:
            rows.append(
                [
                    f"{pool.database}/{pool.user}",
                    str(pool.clients_active),
                    str(pool.clients_waiting),
                    str(pool.servers_active),
                    str(pool.servers_idle),
                    f"{pool.max_wait_seconds:.1f}s",
                ]
            )
            levels.append(_worst(_of(findings, "pgbouncer", f"{pool.database}/{pool.user}")))
        if report.pools:
            lines += _table(rows, levels, paint)
        else:
            lines.append("  no pool yet (no client has connected)")

    header("postgres", "Postgres")
    pg = report.postgres
    if pg is not None:
        states = ", ".join(f"{state} {count}" for state, count in sorted(pg.connections.items())) or "none"
        level = _worst(_of(findings, "postgres", "connections"))
        lines.append(
            paint(
                level,
                f"  connections  {pg.total_connections} of {pg.max_connections} "
                f"({pg.total_connections / pg.max_connections:.0%}): {states}",
            )
        )
        lines.append(f"  database     {pg.database}, {size(pg.size_bytes)}")
        level = _worst(_of(findings, "postgres", "wal archiving"))
        if pg.archive_mode == "off":
            wal = "archive_mode off"
        else:
            wal = (
                f"last segment {duration(pg.last_archived_age_seconds)} ago (limit "
                f"{duration(wal_limit_seconds(pg, settings))}), {pg.archived_count} archived, "
                f"{pg.failed_count} failed"
            )
            if pg.archive_failing:
                wal += f", FAILING since {duration(pg.last_failed_age_seconds)} ago"
        lines.append(paint(level, f"  wal archive  {wal}"))
        longest = pg.longest_transaction
        level = _worst(_of(findings, "postgres", "transaction"))
        text = "none open"
        if longest is not None:
            text = f"{duration(longest['seconds'])} (pid {longest['pid']}, {longest['user']}, {longest['state']})"
        lines.append(paint(level, f"  longest tx   {text}"))

    header("redis", "Redis")
    redis = report.redis
    if redis is not None:
        level = _worst(_of(findings, "redis", "memory"))
        limit = f"{size(redis.maxmemory)} ({redis.used_memory / redis.maxmemory:.0%})" if redis.maxmemory else "none"
        lines.append(
            paint(level, f"  memory       {size(redis.used_memory)} of maxmemory {limit}, policy {redis.policy}")
        )
        rate = f"{redis.hit_rate:.1%}" if redis.hit_rate is not None else "-"
        lines.append(f"  evictions    {redis.evicted_keys}; hit rate {rate} ({redis.hits} hits, {redis.misses} misses)")
        level = _worst(_of(findings, "redis", "persistence"))
        lines.append(paint(level, f"  clients      {redis.clients}; last BGSAVE {redis.last_bgsave_status}"))

    header("backups", "Backups")
    if report.backups is not None:
        rows = [["kind", "last success", "age", "late after"]]
        levels = []
        for kind in report.backups.kinds:
            when = f"{kind.last_success:%Y-%m-%d %H:%M} UTC" if kind.last_success else "never"
            rows.append([kind.kind, when, duration(kind.age(report.backups.now)), duration(kind.late_after)])
            levels.append(_worst(_of(findings, "backups", kind.kind)))
        lines += _table(rows, levels, paint)

    header("alerts", "Alerts firing")
    if report.alerts is not None:
        if not report.alerts:
            lines.append(paint(OK, "  none"))
        for alert in report.alerts:
            where = ", ".join(f"{key}={value}" for key, value in alert.labels.items())
            since = f" for {duration(report.at - alert.since)}" if alert.since else ""
            lines.append(
                paint(
                    CRIT,
                    f"  {alert.name} ({alert.severity}){since}: {alert.summary}" + (f" [{where}]" if where else ""),
                )
            )

    attention = [finding for finding in findings if finding.level != OK]
    if attention:
        lines.append("")
        lines.append(paint.bold("Needs attention"))
        for finding in sorted(attention, key=lambda f: (f.level != CRIT, f.section)):
            mark = "!!" if finding.level == CRIT else " !"
            lines.append(paint(finding.level, f"  {mark} {finding.section}/{finding.subject}: {finding.message}"))
    return "\n".join(lines)


def render(report: Report, settings: Settings, output_format: str, colour: bool) -> tuple[str, bool]:
    """The text to print and whether something needs a person."""
    findings = judge(report, settings)
    if output_format == "json":
        text = json.dumps(as_json(report, findings), indent=2)
    else:
        text = render_table(report, findings, settings, colour)
    return text, needs_a_person(findings)


def use_colour(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make status", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--format", default="table")
    args = parser.parse_args(argv)
    try:
        output_format = check_format(args.format)
        settings = load_stack(args.stack)
    except UsageError as error:
        return fail(error)
    cli = DockerCli(settings.host.docker_host, args.stack)
    report = gather(settings, args.stack, cli, cli, DockerCredentials(cli))
    text, attention = render(report, settings, output_format, use_colour(sys.stdout))
    print(text)
    return 1 if attention else 0


if __name__ == "__main__":
    sys.exit(main())
