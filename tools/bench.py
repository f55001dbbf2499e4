"""`make bench`: pgbench against the real Postgres and PgBouncer, started on loopback with the rendered
files of a stack (default prod):

  (a) direct to Postgres, 50 clients, a new connection per transaction (-C)
  (b) through PgBouncer, 50 clients, a new client connection per transaction (-C)
  (c) direct to Postgres, 50 clients, persistent connections: the ceiling of (a) and (b)
  (d) through PgBouncer, 100 clients, persistent connections: what the guide's pooling is for
  (e) direct to Postgres, 100 clients, persistent connections

Connection overhead is the time a transaction costs beyond the ceiling, 1/TPS - 1/TPS(c). The report
gives the reduction of that overhead from (a) to (b), next to the guide's claim of 60%, and (b) as a
fraction of (c). For every run it also gives the most Postgres server connections it used: client
backends of the bench's database in pg_stat_activity, sampled every 0.1 s during the run.

The deployed max_connections leaves no room for 100 direct clients (that is what PgBouncer is for), so
this run raises `database.maxConnections` to fit them, and lowers `database.workMemMb` as far as the
memory rule (shared_buffers + max_connections x work_mem within the container's memory) requires; the
select-only workload sorts nothing. Postgres runs with `archive_mode=off`: the bench starts no backup
repository for the deployed `archive_command` to push to. Nothing else differs from the stack's files.

Every wait is bounded, and the servers and everything they started are stopped at the end, also when a
step fails or the run is interrupted (Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psycopg

from harness import services
from harness.servers import which
from model.loading import load_settings
from model.settings import Settings
from model.tuning import postgres_tuning
from tools.plan import project_name, stack_config

GUIDE_CLAIM = 0.60
HEADROOM_CONNECTIONS = 24
"""max_connections is raised to the most clients of a direct run plus this."""
SAMPLE_SECONDS = 0.1
DRAIN_SECONDS = 10
"""How long a run waits for the backends of the run before it to end."""
INIT_TIMEOUT_SECONDS = 300
RUN_SLACK_SECONDS = 90
"""A run may take this much longer than its -T: connecting 100 clients with SCRAM over TLS, and ending."""


@dataclass(frozen=True)
class Run:
    label: str
    tps: float
    server_connections: int


def pgbench(argv: list[str], password: str, timeout: float, cwd: Path) -> str:
    """pgbench, killed after `timeout` seconds, working in `cwd` (the run's directory: it is found there
    by whoever looks for what the run left behind)."""
    try:
        result = subprocess.run(
            [which("pgbench"), *argv],
            cwd=cwd,
            env={**os.environ, "PGPASSWORD": password, "PGSSLMODE": "prefer", "PGCONNECT_TIMEOUT": "10"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        raise SystemExit(f"pgbench {' '.join(argv)} did not end within {timeout:.0f} s") from None
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


class ServerConnections:
    """The most client backends of `dbname` that pg_stat_activity showed at once while the block ran,
    sampled every SAMPLE_SECONDS from a connection of its own (to another database: it does not count
    itself)."""

    QUERY = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"

    def __init__(self, dsn: str, dbname: str) -> None:
        self.dsn = dsn
        self.dbname = dbname
        self.most = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="server-connections", daemon=True)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def _count(self) -> int:
        assert self._conn is not None
        row = self._conn.execute(self.QUERY, (self.dbname,)).fetchone()
        return int(row[0]) if row else 0

    def _sample(self) -> None:
        self.most = max(self.most, self._count())

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self._sample()
            except psycopg.Error as error:
                self.error = error
                return

    def __enter__(self) -> ServerConnections:
        """Waits (up to DRAIN_SECONDS) for the backends of an earlier run to end, then starts sampling."""
        self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        self._conn.execute("SET statement_timeout = '5s'")
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._count() and time.monotonic() < deadline:
            time.sleep(SAMPLE_SECONDS)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert self._conn is not None
        self._conn.close()
        if kind is None and self.error is not None:
            raise SystemExit(f"sampling pg_stat_activity failed: {self.error}")


def bench_settings(stack: str, most_direct_clients: int) -> tuple[Settings, dict[str, int]]:
    """The stack's settings with maxConnections raised to fit the direct runs, and workMemMb lowered
    to keep the memory rule; returns the changed keys with their new values."""
    config, _ = stack_config(stack)
    raw = json.loads(config[f"{project_name()}:settings"])
    deployed = load_settings(raw)
    tuning = postgres_tuning(deployed)
    max_connections = max(tuning.max_connections, most_direct_clients + HEADROOM_CONNECTIONS)
    room_mb = deployed.database.resources.memory_mb - tuning.shared_buffers_mb
    work_mem_mb = max(1, min(tuning.work_mem_mb, room_mb // max_connections))
    changed: dict[str, int] = {}
    if max_connections != tuning.max_connections:
        changed["maxConnections"] = max_connections
    if work_mem_mb != tuning.work_mem_mb:
        changed["workMemMb"] = work_mem_mb
    raw.setdefault("database", {}).update(changed)
    return load_settings(raw), changed


def _end_the_run(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupts_end_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does: through the cleanup. The handlers of all three
    are restored afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, _end_the_run)
    signal.signal(signal.SIGHUP, _end_the_run)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def cleanup_not_interrupted() -> Iterator[None]:
    """Once the cleanup begins, a further Ctrl-C (or SIGTERM, SIGHUP) is ignored so that it completes;
    it is bounded. `interrupts_end_the_run` restores the handlers afterwards."""
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def postgres_without_archiving(settings: Settings) -> Iterator[services.Postgres]:
    """Postgres with the stack's files and `archive_mode=off` (a bench starts no backup repository), in
    an environment of its own; stopped and its directory removed at the end, whatever happens, and a
    further interrupt during that cleanup is ignored."""
    with (
        services.environment(settings) as env,
        contextlib.ExitStack() as stops,
        cleanup_not_interrupted(),
    ):
        progress("starting Postgres (archive_mode=off)")
        postgres = services.start_postgres(env, archiving=False)
        stops.callback(postgres.stop)
        yield postgres


def measure(settings: Settings, args: argparse.Namespace) -> list[Run]:
    db = settings.database
    with postgres_without_archiving(settings) as postgres:
        env = postgres.env
        password = env.passwords["app"]
        direct = ["-h", "127.0.0.1", "-p", str(env.topo.postgres_port), "-U", db.user]
        pooled = ["-h", "127.0.0.1", "-p", str(env.topo.pgbouncer_port), "-U", db.user]
        progress(f"pgbench -i -s {args.scale}")
        pgbench(["-i", "-q", "-s", str(args.scale), *direct, db.name], password, INIT_TIMEOUT_SECONDS, env.base)
        n, p = args.clients, args.persistent_clients
        plan = [  # label, clients, through PgBouncer, a new connection per transaction
            (f"(a) direct, {n} clients, new connection per transaction", n, False, True),
            (f"(b) PgBouncer, {n} clients, new connection per transaction", n, True, True),
            (f"(c) direct, {n} clients, persistent connections", n, False, False),
            (f"(d) PgBouncer, {p} clients, persistent connections", p, True, False),
            (f"(e) direct, {p} clients, persistent connections", p, False, False),
        ]
        runs = []
        for label, clients, through_pgbouncer, per_transaction in plan:
            # A PgBouncer of its own for each pooled run, stopped after it: its idle server connections
            # would count in the next run.
            with contextlib.ExitStack() as this_run:
                if through_pgbouncer:
                    progress("starting PgBouncer")
                    this_run.callback(services.start_pgbouncer(env).stop)
                progress(f"running {label}, {args.seconds} s")
                load = ["-c", str(clients), "-j", "2", "-T", str(args.seconds), "-S", "-n"]
                load += ["-C"] if per_transaction else []
                load += [*(pooled if through_pgbouncer else direct), db.name]
                with ServerConnections(postgres.superuser(), db.name) as seen:
                    output = pgbench(load, password, args.seconds + RUN_SLACK_SECONDS, env.base)
            runs.append(Run(label, tps(output), seen.most))
        progress("stopping the servers")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--clients", type=int, default=50, help="clients of runs (a) to (c)")
    parser.add_argument("--persistent-clients", type=int, default=100, help="clients of runs (d) and (e)")
    parser.add_argument("--seconds", type=int, default=20, help="length of each run")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    for option, value, low, high in (
        ("--seconds", args.seconds, 1, 60),
        ("--clients", args.clients, 1, 100),
        ("--persistent-clients", args.persistent_clients, 1, 100),
        ("--scale", args.scale, 1, 100),
    ):
        if not low <= value <= high:
            print(f"{option} = {value}: must be {low}..{high} (the run stays bounded)", file=sys.stderr)
            return 2

    settings, changed = bench_settings(args.stack, max(args.clients, args.persistent_clients))
    max_client_conn = settings.pgbouncer.max_client_conn
    for option, value in (("--clients", args.clients), ("--persistent-clients", args.persistent_clients)):
        if value > max_client_conn:
            print(
                f"{option} = {value}: must not exceed the stack's pgbouncer maxClientConn ({max_client_conn})",
                file=sys.stderr,
            )
            return 2
    with interrupts_end_the_run():
        try:
            runs = measure(settings, args)
        except KeyboardInterrupt as interrupt:
            print(f"interrupted ({str(interrupt) or 'SIGINT'}); the servers were stopped", file=sys.stderr)
            return 130

    a, b, c, d, e = runs
    overhead_a, overhead_b = 1 / a.tps - 1 / c.tps, 1 / b.tps - 1 / c.tps
    reduction = 1 - overhead_b / overhead_a if overhead_a > 0 else 0.0
    tuning = postgres_tuning(settings)
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "clients": args.clients,
        "persistent_clients": args.persistent_clients,
        "seconds": args.seconds,
        "workload": f"pgbench -S (select-only), scale {args.scale}; SCRAM logins over TLS, as deployed",
        "postgres": (
            f"max_connections {tuning.max_connections}, work_mem {tuning.work_mem_mb} MB, archive_mode off"
            f" (changed for the bench: {', '.join(f'{key} {value}' for key, value in changed.items()) or 'none'})"
        ),
        "tps": {run.label: round(run.tps, 1) for run in runs},
        "server_connections": {run.label: run.server_connections for run in runs},
        "overhead_reduction_b_over_a": round(reduction, 3),
        "guide_claim": GUIDE_CLAIM,
        "b_fraction_of_c": round(b.tps / c.tps, 3),
        "d_fraction_of_e": round(d.tps / e.tps, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"pgbench, {args.seconds} s each, {figures['workload']}")
    print(f"machine: {figures['machine']}; date: {figures['date']}")
    print(f"Postgres: {figures['postgres']}")
    print(f"  {'run':<58} {'tps':>10}  server connections (max)")
    for run in runs:
        print(f"  {run.label:<58} {run.tps:10.1f}  {run.server_connections:>5}")
    print(f"connection-overhead reduction (b) over (a): {reduction:.0%}  (guide's claim: {GUIDE_CLAIM:.0%})")
    print(f"(b) as a fraction of the ceiling (c):        {b.tps / c.tps:.0%}")
    print(
        f"(d) as a fraction of (e):                    {d.tps / e.tps:.0%}, with {d.server_connections} "
        f"server connections instead of {e.server_connections}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
