"""The database commands of a deployed stack, through the docker CLI on its host (tools/ops.py):

    python -m tools.db top --stack prod [--limit 20] [--format table|json]     # make db-top
    python -m tools.db maintain --stack prod [--format table|json]             # make db-maintain
    python -m tools.db psql --stack prod [--role monitor|app] [--command SQL]  # make psql
    python -m tools.db logs --stack prod --service postgres [--tail 200] [--follow]   # make logs

Each runs as the least-privileged role that can do its job:
- `top` as `stories_monitor` (pg_monitor: pg_stat_statements with every statement's text, no app data);
- `maintain` as the app's role, the database's owner: in Postgres 15 only a table's owner, the
  database's owner or a superuser may VACUUM or ANALYZE it. It runs plain `VACUUM (ANALYZE, SKIP_LOCKED)`
  and `ANALYZE (SKIP_LOCKED)`, throttled like autovacuum, so it takes no lock beyond VACUUM's own
  (SHARE UPDATE EXCLUSIVE, which reads and writes do not wait for) and steps over a table someone else
  holds; bloat and unused indexes are reported, never acted on (that would take stronger locks);
- `psql` as the monitor role by default (look, without touching data), `--role app` to act as the app;
- `logs` needs no role: the container's log through the docker CLI.

Statement texts are shown with their string literals replaced by '?': pg_stat_statements normalises the
constants of planned statements, but in Postgres 15 not those of utility statements (CREATE ROLE ...
PASSWORD '...' would otherwise be printed as typed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from model.settings import Settings
from model.topology import ROLES, Topology, container_topology
from tools.ops import (
    CommandError,
    Credentials,
    DockerCli,
    DockerCredentials,
    Runner,
    UsageError,
    app_conninfo,
    check_count,
    check_format,
    fail,
    first_line,
    load_stack,
    monitor_conninfo,
    postgres_data_address,
    psql_env,
    query_json,
    running_container,
)
from tools.status import Paint, duration, parse_time, size

ROLE_CHOICES = ("monitor", "app")
DEAD_TUPLES_MIN = 1000  # VACUUM a table when at least this many dead tuples ...
DEAD_SHARE_MIN = 0.10  # ... make up at least this share of its tuples (autovacuum has not caught up)
BLOAT_SHARE_REPORTED = 0.30  # a table whose estimated free space is this share of it, and ...
BLOAT_BYTES_REPORTED = 8 * 1024 * 1024  # ... at least this much, is reported as bloated
QUERY_CHARS = 1000


# ---------------------------------------------------------------------------------------------------
# db-top


def redact_literals(query: str) -> str:
    """String literals (also E'' and U&'' ones) become '?', and runs of white space one space."""
    # E'' strings take backslash escapes; the others (standard_conforming_strings) double the quote only.
    without = re.sub(r"(?i)\bE'(?:[^'\\]|\\.|'')*'|(?:\bU&|\b[BX])?'(?:[^']|'')*'", "'?'", query)
    without = re.sub(r"\$([A-Za-z_][A-Za-z_0-9]*|)\$.*?\$\1\$", "'?'", without, flags=re.DOTALL)
    return re.sub(r"\s+", " ", without).strip()[:QUERY_CHARS]


@dataclass
class Statement:
    role: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    query: str


@dataclass
class Top:
    database: str
    since: datetime | None
    statements: int
    slowest: list[Statement]
    frequent: list[Statement]


def top_sql(limit: int) -> str:
    monitor = ROLES["monitor"]
    return f"""
WITH s AS (
  SELECT coalesce(r.rolname, s.userid::text) AS role, s.calls, s.total_exec_time AS total_ms,
         s.mean_exec_time AS mean_ms, s.rows, s.query
  FROM pg_stat_statements AS s
  JOIN pg_database AS d ON d.oid = s.dbid
  LEFT JOIN pg_roles AS r ON r.oid = s.userid
  WHERE d.datname = current_database() AND r.rolname IS DISTINCT FROM '{monitor}'
)
SELECT json_build_object(
  'database', current_database(),
  'since', (SELECT stats_reset FROM pg_stat_statements_info),
  'statements', (SELECT count(*) FROM s),
  'slowest', (SELECT coalesce(json_agg(t), '[]'::json) FROM (SELECT * FROM s ORDER BY mean_ms DESC LIMIT {limit}) AS t),
  'frequent', (SELECT coalesce(json_agg(t), '[]'::json) FROM (SELECT * FROM s ORDER BY calls DESC LIMIT {limit}) AS t)
)
"""


def parse_top(document: Mapping[str, Any]) -> Top:
    def statements(items: Sequence[Mapping[str, Any]]) -> list[Statement]:
        return [
            Statement(
                role=str(item["role"]),
                calls=int(item["calls"]),
                total_ms=float(item["total_ms"]),
                mean_ms=float(item["mean_ms"]),
                rows=int(item["rows"]),
                query=redact_literals(str(item["query"])),
            )
            for item in items
        ]

    return Top(
        database=str(document["database"]),
        since=parse_time(document.get("since")),
        statements=int(document["statements"]),
        slowest=statements(document.get("slowest") or []),
        frequent=statements(document.get("frequent") or []),
    )


def collect_top(runner: Runner, settings: Settings, topo: Topology, credentials: Credentials, limit: int) -> Top:
    try:
        document = query_json(
            runner, monitor_conninfo(settings, topo), credentials.monitor_password(), top_sql(limit), "stories-db-top"
        )
    except CommandError as error:
        if "pg_stat_statements" in str(error):
            raise CommandError(
                "postgres",
                "psql",
                f"pg_stat_statements is not usable in {settings.database.name} ({error}); it needs "
                "shared_preload_libraries and CREATE EXTENSION",
            ) from error
        raise
    if not isinstance(document, dict):
        raise ValueError("Postgres gave no statements document")
    return parse_top(document)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def render_top(top: Top, width: int = 100) -> str:
    since = f"since {top.since:%Y-%m-%d %H:%M} UTC" if top.since else "since the statistics began"
    lines = [
        f"pg_stat_statements in {top.database}: {top.statements} statements, {since} (the monitor role's own left out)"
    ]
    for title, statements in (("Slowest (by mean time)", top.slowest), ("Most frequent (by calls)", top.frequent)):
        lines.append("")
        lines.append(title)
        if not statements:
            lines.append("  none recorded")
            continue
        rows = [["mean ms", "total ms", "calls", "rows", "role", "query"]]
        rows += [
            [_ms(s.mean_ms), _ms(s.total_ms), str(s.calls), str(s.rows), s.role, s.query[:width]] for s in statements
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.rjust(widths[i]) if i < 4 else cell.ljust(widths[i]) for i, cell in enumerate(row)]
            lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# db-maintain


TABLES_SQL = """
SELECT json_build_object(
  'now', now(),
  'user', current_user,
  'database', current_database(),
  'stats_reset', (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
  'tables', (SELECT coalesce(json_agg(t ORDER BY t.schema, t.name), '[]'::json) FROM (
    SELECT schemaname AS schema, relname AS name, n_live_tup AS live, n_dead_tup AS dead,
           n_mod_since_analyze AS modified, pg_table_size(relid) AS bytes,
           last_vacuum, last_autovacuum, last_analyze, last_autoanalyze
    FROM pg_stat_user_tables) AS t),
  'bloat', (SELECT coalesce(json_agg(b ORDER BY b.bloat_bytes DESC, b.schema, b.name), '[]'::json) FROM (
    SELECT schema, name, pages * bs AS bytes, greatest(pages - est_pages, 0) * bs AS bloat_bytes,
           CASE WHEN pages > 0 THEN greatest(pages - est_pages, 0)::float8 / pages ELSE 0 END AS bloat_share
    FROM (
      SELECT n.nspname AS schema, c.relname AS name, c.relpages::bigint AS pages, bs.bs,
             ceil(c.reltuples / greatest(1, floor((bs.bs - 24) * ff.fillfactor / 100.0 / t.tuple_bytes)))::bigint
               AS est_pages
      FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
      CROSS JOIN (SELECT current_setting('block_size')::int AS bs) AS bs
      CROSS JOIN LATERAL (
        SELECT coalesce(max(substring(option FROM '^fillfactor=(\\d+)$')::int), 100) AS fillfactor
        FROM unnest(coalesce(c.reloptions, '{}'::text[])) AS option) AS ff
      CROSS JOIN LATERAL (
        -- item pointer + tuple header (with its null bitmap) + the average row, each MAXALIGNed
        SELECT 4 + 8 * ceil((23 + CASE WHEN bool_or(s.null_frac > 0) THEN (count(*) + 7) / 8 ELSE 0 END) / 8.0)
                 + 8 * ceil(sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) / 8.0) AS tuple_bytes,
               count(s.attname) = count(*) AS complete
        FROM pg_attribute AS a
        LEFT JOIN pg_stats AS s
          ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname AND NOT s.inherited
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS t
      WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\\_toast%' AND c.reltuples > 0 AND t.complete AND t.tuple_bytes > 0
    ) AS estimate
  ) AS b),
  'unused_indexes', (SELECT coalesce(json_agg(u ORDER BY u.bytes DESC, u.index), '[]'::json) FROM (
    SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index,
           pg_relation_size(s.indexrelid) AS bytes
    FROM pg_stat_user_indexes AS s
    JOIN pg_index AS i ON i.indexrelid = s.indexrelid
    WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
      AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = s.indexrelid)) AS u)
)
"""


@dataclass
class TableStats:
    schema: str
    name: str
    live: int
    dead: int
    modified: int
    bytes: int
    last_vacuum: datetime | None
    last_analyze: datetime | None
    last_autovacuum: datetime | None
    last_autoanalyze: datetime | None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def dead_share(self) -> float:
        return self.dead / max(self.live + self.dead, 1)


@dataclass
class Bloat:
    schema: str
    name: str
    bytes: int
    bloat_bytes: int
    bloat_share: float

    @property
    def reported(self) -> bool:
        return self.bloat_share >= BLOAT_SHARE_REPORTED and self.bloat_bytes >= BLOAT_BYTES_REPORTED


@dataclass
class UnusedIndex:
    schema: str
    table: str
    index: str
    bytes: int


@dataclass
class Snapshot:
    now: datetime
    user: str
    database: str
    stats_reset: datetime | None
    tables: list[TableStats]
    bloat: list[Bloat]
    unused_indexes: list[UnusedIndex]


def parse_snapshot(document: Mapping[str, Any]) -> Snapshot:
    now = parse_time(document["now"])
    assert now is not None
    return Snapshot(
        now=now,
        user=str(document["user"]),
        database=str(document["database"]),
        stats_reset=parse_time(document.get("stats_reset")),
        tables=[
            TableStats(
                schema=str(t["schema"]),
                name=str(t["name"]),
                live=int(t["live"]),
                dead=int(t["dead"]),
                modified=int(t["modified"]),
                bytes=int(t["bytes"]),
                last_vacuum=parse_time(t.get("last_vacuum")),
                last_analyze=parse_time(t.get("last_analyze")),
                last_autovacuum=parse_time(t.get("last_autovacuum")),
                last_autoanalyze=parse_time(t.get("last_autoanalyze")),
            )
            for t in document.get("tables") or []
        ],
        bloat=[
            Bloat(str(b["schema"]), str(b["name"]), int(b["bytes"]), int(b["bloat_bytes"]), float(b["bloat_share"]))
            for b in document.get("bloat") or []
        ],
        unused_indexes=[
            UnusedIndex(str(u["schema"]), str(u["table"]), str(u["index"]), int(u["bytes"]))
            for u in document.get("unused_indexes") or []
        ],
    )


VACUUM, ANALYZE, NOTHING = "vacuum", "analyze", "nothing"


def plan_maintenance(tables: Sequence[TableStats]) -> dict[str, str]:
    """What each table gets: VACUUM (with ANALYZE) where dead tuples pile up, ANALYZE where rows changed
    since the last analyze or it never had one, nothing otherwise."""
    plan = {}
    for table in tables:
        if table.dead >= DEAD_TUPLES_MIN and table.dead_share >= DEAD_SHARE_MIN:
            plan[table.qualified] = VACUUM
        elif table.modified > 0 or (table.last_analyze is None and table.last_autoanalyze is None):
            plan[table.qualified] = ANALYZE
        else:
            plan[table.qualified] = NOTHING
    return plan


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


SESSION_SETTINGS = (
    # The server's 30 s statement_timeout is for the app; VACUUM of a large table takes longer.
    "SET statement_timeout = 0;\n"
    # Never queue behind someone else's lock (SKIP_LOCKED covers the table; this covers the catalog).
    "SET lock_timeout = '5s';\n"
    # Throttled like autovacuum: the I/O stays in the background during school hours.
    "SET vacuum_cost_delay = '2ms';\n"
)


def maintenance_script(plan: Mapping[str, str], tables: Sequence[TableStats]) -> str:
    statements = [SESSION_SETTINGS]
    for table in tables:
        target = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
        action = plan.get(table.qualified, NOTHING)
        if action == VACUUM:
            statements.append(f"VACUUM (ANALYZE, SKIP_LOCKED) {target};\n")
        elif action == ANALYZE:
            statements.append(f"ANALYZE (SKIP_LOCKED) {target};\n")
    return "".join(statements)


_SKIPPING = re.compile(r'skipping (?:(?:vacuum|analyze) of )?"([^"]+)" --- (.+)$')
_STATEMENT = re.compile(r"^(?:STATEMENT:\s+)?(?:VACUUM \(ANALYZE, SKIP_LOCKED\)|ANALYZE \(SKIP_LOCKED\))\s+(.+?);?$")
LOCK_NOT_AVAILABLE = "lock not available"


def parse_messages(stderr: str) -> tuple[set[str], dict[str, str]]:
    """psql's messages of the maintenance script (run with --echo-errors): the relations skipped because
    someone held a lock, and the ones that failed with the reason (an ERROR, followed by the failed
    statement, or a WARNING that skips the relation for another reason, such as a missing privilege)."""
    skipped: set[str] = set()
    failed: dict[str, str] = {}
    error = ""
    for raw in stderr.splitlines():
        line = re.sub(r"^psql:[^:]*:\d+:\s*", "", raw.strip())
        skipping = _SKIPPING.search(line)
        if skipping:
            relation, reason = skipping.groups()
            if reason.strip() == LOCK_NOT_AVAILABLE:
                skipped.add(relation)
            else:
                failed[relation] = reason.strip()
            continue
        if line.startswith("ERROR:"):
            error = line.removeprefix("ERROR:").strip()
            continue
        statement = _STATEMENT.match(line)
        if error and statement:
            failed[statement.group(1).replace('"', "")] = error
            error = ""
    return skipped, failed


@dataclass
class TableOutcome:
    table: str
    action: str  # vacuum, analyze, nothing
    result: str  # done, skipped (lock), failed: ..., up to date
    live: int
    dead_before: int
    dead_after: int
    bytes: int


@dataclass
class Maintenance:
    database: str
    user: str
    started: datetime
    seconds: float
    tables: list[TableOutcome]
    bloat: list[Bloat]
    unused_indexes: list[UnusedIndex]
    stats_reset: datetime | None
    failed: bool = field(default=False)


def outcome(before: Snapshot, after: Snapshot, plan: Mapping[str, str], stderr: str) -> Maintenance:
    """What happened, proven by the statistics the server keeps: a table counts as vacuumed (analyzed)
    when its last_vacuum (last_analyze) moved past the start."""
    skipped, failed = parse_messages(stderr)
    now_of = {table.qualified: table for table in after.tables}
    rows = []
    for table in before.tables:
        later = now_of.get(table.qualified, table)
        action = plan.get(table.qualified, NOTHING)
        if action == NOTHING:
            result = "up to date"
        elif table.qualified in failed or table.name in failed:
            result = f"failed: {failed.get(table.qualified) or failed.get(table.name)}"
        elif table.name in skipped or table.qualified in skipped:
            result = "skipped: someone holds a lock on it (SKIP_LOCKED)"
        else:
            stamp = later.last_vacuum if action == VACUUM else later.last_analyze
            result = "done" if stamp is not None and stamp >= before.now else "not done (no failure reported)"
        rows.append(TableOutcome(table.qualified, action, result, later.live, table.dead, later.dead, later.bytes))
    return Maintenance(
        database=after.database,
        user=after.user,
        started=before.now,
        seconds=(after.now - before.now).total_seconds(),
        tables=rows,
        bloat=after.bloat,
        unused_indexes=after.unused_indexes,
        stats_reset=after.stats_reset,
        failed=any(row.result.startswith(("failed", "not done")) for row in rows),
    )


def maintain(
    runner: Runner, settings: Settings, topo: Topology, credentials: Credentials, hostaddr: str | None = None
) -> Maintenance:
    password = credentials.app_password()
    conninfo = app_conninfo(settings, topo, hostaddr)
    document = query_json(runner, conninfo, password, TABLES_SQL, "stories-db-maintain")
    if not isinstance(document, dict):
        raise ValueError("Postgres gave no table statistics")
    before = parse_snapshot(document)
    plan = plan_maintenance(before.tables)
    stderr = ""
    if any(action != NOTHING for action in plan.values()):
        result = runner.run(
            "postgres",
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", "--echo-errors", *conninfo, "-f", "-"],
            stdin=maintenance_script(plan, before.tables),
            env=psql_env(password, "stories-db-maintain"),
            timeout=None,  # VACUUM takes as long as it takes; it is throttled and never blocks readers or writers
        )
        stderr = result.stderr
    later = query_json(runner, conninfo, password, TABLES_SQL, "stories-db-maintain")
    if not isinstance(later, dict):
        raise ValueError("Postgres gave no table statistics")
    return outcome(before, parse_snapshot(later), plan, stderr)


def render_maintenance(report: Maintenance, colour: bool = False) -> str:
    paint = Paint(colour)
    lines = [
        f"db-maintain {report.database} as {report.user}, {report.started:%Y-%m-%d %H:%M:%S} UTC, "
        f"{duration(report.seconds)}"
    ]
    lines.append("")
    if not report.tables:
        lines.append("  no tables")
    else:
        rows = [["table", "size", "live rows", "dead before", "dead after", "action", "result"]]
        levels = []
        for t in report.tables:
            action = {VACUUM: "VACUUM (ANALYZE)", ANALYZE: "ANALYZE", NOTHING: "-"}[t.action]
            rows.append([t.table, size(t.bytes), str(t.live), str(t.dead_before), str(t.dead_after), action, t.result])
            levels.append(
                "crit"
                if t.result.startswith(("failed", "not done"))
                else "warn"
                if t.result.startswith("skipped")
                else "ok"
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for index, row in enumerate(rows):
            text = ("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))).rstrip()
            lines.append(text if index == 0 else paint(levels[index - 1], text))
    lines.append("")
    bloated = [b for b in report.bloat if b.reported]
    lines.append(
        f"Bloat (estimated from the planner's statistics; reported from {BLOAT_SHARE_REPORTED:.0%} and "
        f"{size(BLOAT_BYTES_REPORTED)}; VACUUM FULL or pg_repack would take a stronger lock: plan it off-hours)"
    )
    if not bloated:
        lines.append("  none worth reporting")
    for b in bloated:
        lines.append(
            paint(
                "warn", f"  {b.schema}.{b.name}: about {size(b.bloat_bytes)} of {size(b.bytes)} ({b.bloat_share:.0%})"
            )
        )
    lines.append("")
    since = (
        f"{report.stats_reset:%Y-%m-%d %H:%M} UTC" if report.stats_reset else "the statistics began (or the last crash)"
    )
    lines.append(
        f"Unused indexes (no scan since {since}; not unique, not a constraint's; DROP INDEX CONCURRENTLY to remove)"
    )
    if not report.unused_indexes:
        lines.append("  none")
    for u in report.unused_indexes:
        lines.append(paint("warn", f"  {u.schema}.{u.index} on {u.table}: {size(u.bytes)}"))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------------
# psql and logs


def psql_invocation(
    settings: Settings,
    topo: Topology,
    role: str,
    credentials: Credentials,
    command: str | None = None,
    hostaddr: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """psql's arguments and environment (the password among it) for `role` in the Postgres container;
    `hostaddr`: the server's data-network address, for the app role (app_conninfo)."""
    if role == "monitor":
        conninfo, password = monitor_conninfo(settings, topo), credentials.monitor_password()
    else:
        conninfo, password = app_conninfo(settings, topo, hostaddr), credentials.app_password()
    env = {**psql_env(password, f"stories-psql-{role}"), "PSQL_HISTORY": "/tmp/.psql_history"}
    argv = ["psql", *conninfo]
    if command is not None:
        argv += ["-X", "-v", "ON_ERROR_STOP=1", "-c", command]
    return argv, env


def service_names(cli: DockerCli) -> list[str]:
    """The stack's containers by name without the stack prefix: services and one-shots (config containers,
    which never run, left out)."""
    listed = cli.docker(
        "ps",
        "-a",
        "--filter",
        f"label=org.1001stories.stack={cli.stack}",
        "--format",
        '{{.Names}}\t{{.Label "org.1001stories.role"}}',
    )
    names = []
    for line in listed.splitlines():
        name, _, role = line.partition("\t")
        if name.strip() and role.strip() != "config":
            names.append(name.strip().removeprefix(f"{cli.stack}-"))
    return sorted(names)


def logs_argv(cli: DockerCli, service: str, tail: int, follow: bool) -> list[str]:
    return [
        *cli.prefix(),
        "logs",
        "--timestamps",
        "--tail",
        str(tail),
        *(["--follow"] if follow else []),
        running_container(cli, service),
    ]


# ---------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools.db", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    top = commands.add_parser("top")
    top.add_argument("--limit", default="20")
    maintain_parser = commands.add_parser("maintain")
    psql = commands.add_parser("psql")
    psql.add_argument("--role", default="monitor")
    psql.add_argument("--command", dest="sql", default=None)
    logs = commands.add_parser("logs")
    logs.add_argument("--service", default="")
    logs.add_argument("--tail", default="200")
    logs.add_argument("--follow", action="store_true")
    for sub in (top, maintain_parser, psql, logs):
        sub.add_argument("--stack", default="dev")
    for sub in (top, maintain_parser):
        sub.add_argument("--format", default="table")
    args = parser.parse_args(argv)
    try:
        output_format = check_format(args.format) if args.command in ("top", "maintain") else "table"
        limit = check_count("N", args.limit, 1, 1000) if args.command == "top" else 0
        tail = check_count("N", args.tail, 1, 100_000) if args.command == "logs" else 0
        if args.command == "psql" and args.role not in ROLE_CHOICES:
            raise UsageError("ROLE", args.role, f"must be {' or '.join(ROLE_CHOICES)}")
        settings = load_stack(args.stack)
    except UsageError as error:
        return fail(error)
    cli = DockerCli(settings.host.docker_host, args.stack)
    topo = container_topology(settings)
    credentials = DockerCredentials(cli)
    try:
        if args.command == "top":
            result = collect_top(cli, settings, topo, credentials, limit)
            print(json.dumps(_jsonable(asdict(result)), indent=2) if output_format == "json" else render_top(result))
            return 0
        if args.command == "maintain":
            report = maintain(cli, settings, topo, credentials, postgres_data_address(cli))
            if output_format == "json":
                print(json.dumps(_jsonable(asdict(report)), indent=2))
            else:
                print(render_maintenance(report, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
            return 1 if report.failed else 0
        if args.command == "psql":
            hostaddr = postgres_data_address(cli) if args.role == "app" else None
            psql_argv, env = psql_invocation(settings, topo, args.role, credentials, args.sql, hostaddr)
            if args.sql is not None:
                output = cli.run("postgres", psql_argv, env=env)
                print(output.stdout, end="")
                return 0
            command = cli.exec_argv("postgres", psql_argv, sorted(env), interactive=True, tty=sys.stdin.isatty())
            os.execvpe(command[0], command, {**os.environ, **env})
        if args.command == "logs":
            known = service_names(cli)
            if args.service not in known:
                rule = (
                    "name one of the stack's containers"
                    if not args.service
                    else f"no container {args.stack}-{args.service}"
                )
                return fail(
                    UsageError(
                        "SERVICE", args.service, f"{rule}; known: {', '.join(known) or 'none (is the stack deployed?)'}"
                    )
                )
            command = logs_argv(cli, args.service, tail, args.follow)
            os.execvp(command[0], command)
    except (CommandError, ValueError) as error:
        print(f"error: {first_line(str(error))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
