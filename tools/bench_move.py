"""`make bench-move`: the data step of moving a stack from Docker to Kubernetes (README "Moving a stack
from Docker to Kubernetes"), timed on a pgbench database of about 1 GB.

The source is Postgres with the prod stack's rendered files; `pg_dump -Fc` runs there as the app's role,
as the README says, without the Docker target's `pgbouncer` schema. The target, standing in for the
CloudNativePG cluster's primary, is a second Postgres 15 (the same major) on another free loopback port
with the app's role and an empty database (the harness's init SQL creates them); `pg_restore --jobs 2`
runs there as the superuser over the socket, as `kubectl exec ... pg_restore` does in the pod. Then the
pgbench tables' row counts must be equal on both sides. Both servers run with `archive_mode=off` (no
backup repository is started), and both, with their directories, are removed at the end, also on failure
or interruption.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import services
from harness.servers import PG_BIN, logs_on_failure, run_as
from tools.bench import interrupts_end_the_run, machine, postgres_without_archiving, progress
from tools.pgbench_db import FILL_TIMEOUT_SECONDS, AppClient, add_scale_argument, fill, ok, timed_seconds
from tools.plan import settings_for

STACK = "prod"
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
DOCKER_ONLY_SCHEMA = "pgbouncer"
"""The Docker target's PgBouncer lookup (init.sql): owned by the superuser and granted to a role that
CloudNativePG's cluster does not have, so the move leaves it out; restoring it there fails."""
RESTORE_JOBS = 2
"""This machine's two cores; on the cluster, as many as the primary's CPU limit."""


def row_counts(client: AppClient) -> dict[str, int]:
    counts = client.query(" UNION ALL ".join(f"SELECT '{table}', count(*) FROM {table}" for table in TABLES))
    return {table: int(count) for table, count in (line.split("|") for line in counts.splitlines())}


def check_rows(source: dict[str, int], target: dict[str, int]) -> None:
    """The move lost or added no row of any pgbench table."""
    if set(source) != set(TABLES) or source != target:
        raise SystemExit(f"row counts differ after the restore: source {source}, target {target}")


def dump(source: services.Postgres, path: Path) -> float:
    """`pg_dump -Fc` as the app's role, to `path`; the seconds it took."""
    argv = ["-Fc", f"--exclude-schema={DOCKER_ONLY_SCHEMA}", "-f", str(path)]
    started = time.monotonic()
    AppClient(source).run(str(PG_BIN / "pg_dump"), *argv, timeout=FILL_TIMEOUT_SECONDS)
    return timed_seconds(started)


def restore(target: services.Postgres, path: Path) -> float:
    """`pg_restore --jobs` as the superuser over the target's socket; the seconds it took."""
    argv = [str(PG_BIN / "pg_restore"), *target.socket_args(), "--jobs", str(RESTORE_JOBS)]
    argv += ["-d", target.env.settings.database.name, str(path)]
    started = time.monotonic()
    ok(run_as(target.user, argv, timeout=FILL_TIMEOUT_SECONDS))
    return timed_seconds(started)


def move(source: services.Postgres, target: services.Postgres, scale: int) -> dict[str, object]:
    """Fill the source, dump it, restore the dump into the target, compare; the figures."""
    app_source, app_target = AppClient(source), AppClient(target)
    progress(f"pgbench -i -s {scale}")
    load_seconds = fill(app_source, scale)
    path = source.env.base / "move.dump"
    progress("pg_dump -Fc")
    dump_seconds = dump(source, path)
    progress(f"pg_restore --jobs {RESTORE_JOBS}")
    restore_seconds = restore(target, path)
    rows = {"source": row_counts(app_source), "target": row_counts(app_target)}
    check_rows(rows["source"], rows["target"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "pgbench_scale": scale,
        "database_bytes": app_source.database_bytes(),
        "restored_database_bytes": app_target.database_bytes(),
        "load_seconds": load_seconds,
        "dump_bytes": path.stat().st_size,
        "dump_seconds": dump_seconds,
        "restore_jobs": RESTORE_JOBS,
        "restore_seconds": restore_seconds,
        "total_seconds": round(dump_seconds + restore_seconds, 2),
        "rows": rows,
    }


def measure(scale: int) -> dict[str, object]:
    """Both servers started, `move`, both stopped and their directories removed, whatever happens."""
    settings = settings_for(STACK)
    with (
        postgres_without_archiving(settings) as source,
        postgres_without_archiving(settings) as target,
        logs_on_failure(source.server, target.server),
    ):
        return move(source, target, scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-move", description=__doc__.splitlines()[0] if __doc__ else None)
    add_scale_argument(parser)
    args = parser.parse_args(argv)
    with interrupts_end_the_run():
        try:
            figures = measure(args.scale)
        except KeyboardInterrupt as interrupt:
            print(f"interrupted ({str(interrupt) or 'SIGINT'}); the servers were stopped", file=sys.stderr)
            return 130
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
