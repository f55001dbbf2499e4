"""`make bench`: pgbench against the real Postgres and PgBouncer, started on loopback with the rendered
files of a stack (default prod), 50 clients:

  (a) direct to Postgres, a new connection per transaction (-C)
  (b) through PgBouncer, a new client connection per transaction (-C)
  (c) direct to Postgres with persistent connections: the ceiling

Connection overhead is the time a transaction costs beyond the ceiling, 1/TPS - 1/TPS(c). The report
gives the reduction of that overhead from (a) to (b), next to the guide's claim of 60%, and (b) as a
fraction of (c).

The deployed max_connections leaves no room for 50 direct clients (that is what PgBouncer is for), so
this run raises `database.maxConnections` to fit them; nothing else differs from the stack's files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import services
from harness.servers import which
from model.loading import load_settings
from tools.plan import project_name, stack_config

GUIDE_CLAIM = 0.60


@dataclass(frozen=True)
class Run:
    label: str
    tps: float


def pgbench(argv: list[str], password: str) -> str:
    result = subprocess.run(
        [which("pgbench"), *argv],
        env={**os.environ, "PGPASSWORD": password, "PGSSLMODE": "prefer"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"pgbench {' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def tps(output: str) -> float:
    match = re.search(
        r"tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)", output
    )
    match = match or re.search(r"tps = ([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.clients <= 100:
        print("--seconds must be 1..60 and --clients 1..100 (the run stays bounded)", file=sys.stderr)
        return 2

    config, _ = stack_config(args.stack)
    raw = json.loads(config[f"{project_name()}:settings"])
    raw.setdefault("database", {})["maxConnections"] = args.clients + 24
    settings = load_settings(raw)
    with services.environment(settings) as env:
        postgres = services.start_postgres(env)
        bouncer = services.start_pgbouncer(env)
        try:
            db = settings.database
            password = env.passwords["app"]
            direct = ["-h", "127.0.0.1", "-p", str(env.topo.postgres_port), "-U", db.user]
            pooled = ["-h", "127.0.0.1", "-p", str(env.topo.pgbouncer_port), "-U", db.user]
            pgbench(["-i", "-q", "-s", str(args.scale), *direct, db.name], password)
            load = ["-c", str(args.clients), "-j", "2", "-T", str(args.seconds), "-S", "-n"]
            runs = [
                Run(
                    "(a) direct, new connection per transaction",
                    tps(pgbench([*load, "-C", *direct, db.name], password)),
                ),
                Run(
                    "(b) PgBouncer, new connection per transaction",
                    tps(pgbench([*load, "-C", *pooled, db.name], password)),
                ),
                Run("(c) direct, persistent connections", tps(pgbench([*load, *direct, db.name], password))),
            ]
        finally:
            bouncer.stop()
            postgres.stop()
    a, b, c = (run.tps for run in runs)
    overhead_a, overhead_b = 1 / a - 1 / c, 1 / b - 1 / c
    reduction = 1 - overhead_b / overhead_a if overhead_a > 0 else 0.0
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "clients": args.clients,
        "seconds": args.seconds,
        "workload": f"pgbench -S (select-only), scale {args.scale}; SCRAM logins over TLS, as deployed",
        "tps": {run.label: round(run.tps, 1) for run in runs},
        "overhead_reduction_b_over_a": round(reduction, 3),
        "guide_claim": GUIDE_CLAIM,
        "b_fraction_of_c": round(b / c, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"pgbench, {args.clients} clients, {args.seconds} s each, {figures['workload']}")
    print(f"machine: {figures['machine']}; date: {figures['date']}")
    for run in runs:
        print(f"  {run.label:<48} {run.tps:10.1f} tps")
    print(f"connection-overhead reduction (b) over (a): {reduction:.0%}  (guide's claim: {GUIDE_CLAIM:.0%})")
    print(f"(b) as a fraction of the ceiling (c):        {b / c:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
