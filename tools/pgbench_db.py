"""The pgbench database the restore and move benchmarks measure on: `pgbench -i` at a bounded scale in
the harness's Postgres, and the libpq clients (pgbench, psql, pg_dump) run against it as the app's role,
over TLS with the generated password, as the app connects."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import dataclass

from harness import services
from harness.servers import which

DEFAULT_SCALE = 70
"""About 1 GB (1.1 GB measured)."""
SCALE_BOUNDS = (1, 200)
"""The run stays bounded: scale 200 is about 3 GB."""
FILL_TIMEOUT_SECONDS = 1800
QUERY_TIMEOUT_SECONDS = 60


def scale(text: str) -> int:
    """argparse's `type` for --scale."""
    value = int(text)
    low, high = SCALE_BOUNDS
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value}: must be {low}..{high} (the run stays bounded)")
    return value


def add_scale_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", type=scale, default=DEFAULT_SCALE, help=f"pgbench scale; {DEFAULT_SCALE} is about 1 GB"
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The command's output; it failing ends the run with what it said."""
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.args[0]}): {result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class AppClient:
    """libpq's command-line clients as the app's role against one harness Postgres."""

    postgres: services.Postgres

    def connection_args(self) -> list[str]:
        db = self.postgres.env.settings.database
        return ["-h", "127.0.0.1", "-p", str(self.postgres.env.topo.postgres_port), "-U", db.user]

    def run(self, program: str, *argv: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> str:
        """`program` with the connection options, `argv` and the database's name last."""
        environment = {**os.environ, "PGPASSWORD": self.postgres.env.passwords["app"], "PGSSLMODE": "require"}
        command = [program, *self.connection_args(), *argv, self.postgres.env.settings.database.name]
        return ok(
            subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
        )

    def query(self, sql: str) -> str:
        return self.run("psql", "-X", "-At", "-c", sql).strip()

    def database_bytes(self) -> int:
        return int(self.query("SELECT pg_database_size(current_database())"))


def timed_seconds(started: float) -> float:
    """The seconds since `started` (a `time.monotonic()`), to the hundredth."""
    return round(time.monotonic() - started, 2)


def fill(client: AppClient, scale: int) -> float:
    """`pgbench -i` at `scale`; the seconds it took."""
    started = time.monotonic()
    client.run(which("pgbench"), "-i", "-q", "-s", str(scale), timeout=FILL_TIMEOUT_SECONDS)
    return timed_seconds(started)
