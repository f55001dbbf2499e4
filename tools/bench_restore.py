"""`make bench-restore`: the restore drill on a pgbench database of about 1 GB, from the S3-compatible
repository (moto behind TLS, on loopback), with the prod stack's rendered files. Reports the RTO and
RPO the drill measures, next to the guide's 30 and 15 minutes.

Steps: Postgres with WAL archiving to the repository, `pgbench -i` at the given scale, a full backup,
more writes, a heartbeat and an archived segment switch, then `stories-backup drill`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

from harness import services
from harness.servers import which
from tools.bench import machine
from tools.plan import settings_for

STACK = "prod"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench-restore", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale; 70 is about 1 GB")
    args = parser.parse_args(argv)
    if not 1 <= args.scale <= 200:
        print("--scale must be 1..200 (the run stays bounded)", file=sys.stderr)
        return 2
    settings = settings_for(STACK)
    with services.environment(settings) as env:
        s3 = services.start_s3(env)
        postgres = services.start_postgres(env)
        try:
            cli = services.BackupCli(env, STACK)
            figures = run(env, postgres, cli, args.scale)
        finally:
            postgres.stop()
            s3.stop()
    print(json.dumps(figures, indent=2))
    return 0


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        raise SystemExit(f"failed: {result.stdout}{result.stderr}")
    return result.stdout


def run(
    env: services.Environment, postgres: services.Postgres, cli: services.BackupCli, scale: int
) -> dict[str, object]:
    db = env.settings.database
    pg = ["-h", "127.0.0.1", "-p", str(env.topo.postgres_port), "-U", db.user]
    pg_env = {**os.environ, "PGPASSWORD": env.passwords["app"], "PGSSLMODE": "require"}
    _ok(cli("init"))
    started = time.monotonic()
    _ok(
        subprocess.run(
            [which("pgbench"), "-i", "-q", "-s", str(scale), *pg, db.name],
            env=pg_env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    )
    load_seconds = time.monotonic() - started
    size = _ok(
        subprocess.run(
            ["psql", "-X", "-At", *pg, "-d", db.name, "-c", "SELECT pg_database_size(current_database())"],
            env=pg_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    started = time.monotonic()
    _ok(cli("backup", "postgres", "--type", "full"))
    backup_seconds = time.monotonic() - started
    _ok(
        subprocess.run(
            [which("pgbench"), "-n", "-c", "4", "-T", "10", *pg, db.name],
            env=pg_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    )
    _ok(cli("heartbeat"))
    _ok(
        subprocess.run(
            [
                "psql",
                "-X",
                "-At",
                "-h",
                env.topo.postgres_socket_dir,
                "-p",
                str(env.topo.postgres_port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "SELECT pg_switch_wal()",
            ],
            preexec_fn=postgres.user.preexec(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    time.sleep(5)  # the archiver pushes the switched segment
    drill = _ok(cli("drill"))
    print(drill)
    rto = float(re.search(r"RTO \(restore until it answers queries\): ([\d.]+) s", drill).group(1))  # type: ignore[union-attr]
    rpo_match = re.search(r"RPO \(now minus newest recoverable data\): ([\d.]+) s", drill)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "database_bytes": int(size.strip()),
        "pgbench_scale": scale,
        "load_seconds": round(load_seconds, 1),
        "full_backup_seconds": round(backup_seconds, 1),
        "rto_seconds": rto,
        "rpo_seconds": float(rpo_match.group(1)) if rpo_match else None,
        "objectives": {"rto_minutes": env.settings.backup.rto_minutes, "rpo_minutes": env.settings.backup.rpo_minutes},
        "drill_passed": "drill passed" in drill,
    }


if __name__ == "__main__":
    sys.exit(main())
