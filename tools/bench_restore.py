"""`make bench-restore`: the restore drill on a pgbench database of about 1 GB, from the S3-compatible
repository (moto behind TLS, on loopback), with the prod stack's rendered files. Reports the RTO and
RPO the drill measures, next to the guide's 30 and 15 minutes.

Steps: Postgres with WAL archiving to the repository, `pgbench -i` at the given scale, a full backup,
more writes, a heartbeat and an archived segment switch, then `stories-backup drill`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime

from harness import services
from harness.servers import logs_on_failure, run_as, which
from tools.bench import machine
from tools.pgbench_db import QUERY_TIMEOUT_SECONDS, AppClient, add_scale_argument, fill, ok, timed_seconds
from tools.plan import settings_for

STACK = "prod"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench-restore", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_scale_argument(parser)
    args = parser.parse_args(argv)
    settings = settings_for(STACK)
    with services.environment(settings) as env:
        s3 = services.start_s3(env)
        postgres = services.start_postgres(env)
        try:
            cli = services.BackupCli(env, STACK)
            with logs_on_failure(postgres.server):
                figures = run(env, postgres, cli, args.scale)
        finally:
            postgres.stop()
            s3.stop()
    print(json.dumps(figures, indent=2))
    return 0


def run(
    env: services.Environment, postgres: services.Postgres, cli: services.BackupCli, scale: int
) -> dict[str, object]:
    app = AppClient(postgres)
    ok(cli("init"))
    load_seconds = fill(app, scale)
    size = app.database_bytes()
    started = time.monotonic()
    ok(cli("backup", "postgres", "--type", "full"))
    backup_seconds = timed_seconds(started)
    app.run(which("pgbench"), "-n", "-c", "4", "-T", "10", timeout=120)
    ok(cli("heartbeat"))
    ok(
        run_as(
            postgres.user,
            ["psql", "-X", "-At", *postgres.socket_args(), "-d", "postgres", "-c", "SELECT pg_switch_wal()"],
            timeout=QUERY_TIMEOUT_SECONDS,
        )
    )
    time.sleep(5)  # the archiver pushes the switched segment
    drill = ok(cli("drill"))
    print(drill)
    rto = float(re.search(r"RTO \(restore until it answers queries\): ([\d.]+) s", drill).group(1))  # type: ignore[union-attr]
    rpo_match = re.search(r"RPO \(age of the newest archived WAL\): ([\d.]+) s", drill)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "database_bytes": size,
        "pgbench_scale": scale,
        "load_seconds": load_seconds,
        "full_backup_seconds": backup_seconds,
        "rto_seconds": rto,
        "rpo_seconds": float(rpo_match.group(1)) if rpo_match else None,
        "objectives": {"rto_minutes": env.settings.backup.rto_minutes, "rpo_minutes": env.settings.backup.rpo_minutes},
        "drill_passed": "drill passed" in drill,
    }


if __name__ == "__main__":
    sys.exit(main())
