"""`make bench` ends by itself, prints every figure and leaves no process behind, also when it is
interrupted or a step fails; `Postgres.stop()` is bounded even when its archive_command cannot reach
the repository.

A run's processes are told apart from everything else on the machine (other test sessions run servers
too) by the run's directory: the bench works in a private TMPDIR, and every process it starts has its
command line, working directory or an open file there (Postgres's children: the data directory and the
log; pgbench works in the run's directory). A zombie has ended and is not counted: init reaps it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import tools.bench
from harness import services
from harness.servers import KILL_WAIT_SECONDS
from tools.plan import settings_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--seconds", "2", "--clients", "5", "--persistent-clients", "10"]
RUN_LABELS = ("(a)", "(b)", "(c)", "(d)", "(e)")


def processes_under(directory: Path) -> dict[int, str]:
    """pid -> command line of every live process whose command line, working directory or open files
    lie under `directory`."""
    prefix = str(directory)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            paths = [os.readlink(entry / "cwd")]
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    paths.append(os.readlink(fd))
        except OSError:
            continue  # ended meanwhile
        if prefix in cmdline or any(path.startswith(prefix) for path in paths):
            found[int(entry.name)] = cmdline
    return found


def process_list() -> set[tuple[int, str]]:
    """(pid, start time) of every process: a process list to compare before and after."""
    listed = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            listed.add((int(entry.name), stat[stat.rindex(")") + 2 :].split()[19]))
    return listed


def assert_nothing_left(directory: Path, before: set[tuple[int, str]]) -> None:
    """No live process of the run under `directory`. (The processes started since `before` that run one
    of the bench's programs are shown when it fails.)"""
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    left = processes_under(directory)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_under(directory)
    started_since = {pid for pid, _ in process_list() - before}
    programs = ("postgres", "pgbouncer", "pgbackrest", "pgbench", "psql")
    new = {pid: comm for pid in started_since if (comm := _comm(pid)) in programs}
    assert not left, f"left behind by the run: {left}; started since and running (any run): {new}"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """The bench's TMPDIR; readable by the servers' users (pytest's tmp_path is private to the runner).
    Afterwards, whatever of the run a failed test left behind is killed."""
    directory = Path(tempfile.mkdtemp(prefix="bench-test-"))
    directory.chmod(0o755)
    yield directory
    for pid in processes_under(directory):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def start_bench(run_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m tools.bench` as `make bench` runs it, in a session of its own so that a test can
    send a Ctrl-C to it as a terminal does: SIGINT to its whole process group. (SIGINT is reset to its
    default: a test runner started in the background by a shell may have it ignored, and that is
    inherited.)"""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.bench", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(run_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_short_bench_ends_prints_every_figure_and_leaves_no_process(run_dir: Path) -> None:
    before = process_list()
    started = time.monotonic()
    bench = start_bench(run_dir, *SHORT)
    try:
        out, err = bench.communicate(timeout=240)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    elapsed = time.monotonic() - started
    assert bench.returncode == 0, out + err
    assert elapsed < 120, f"the short bench took {elapsed:.0f} s"
    rows = {
        match.group(1): (float(match.group(2)), int(match.group(3)))
        for match in re.finditer(r"^  (\([a-e]\)) .+? +([\d.]+) +(\d+)$", out, re.MULTILINE)
    }
    assert tuple(rows) == RUN_LABELS, out
    assert all(tps > 0 for tps, _ in rows.values()), out
    # Direct with persistent connections: Postgres serves exactly the clients.
    assert rows["(c)"][1] == 5 and rows["(e)"][1] == 10, out
    pool = settings_for("prod").pgbouncer
    assert 1 <= rows["(d)"][1] <= pool.default_pool_size + pool.reserve_pool_size + 1, out  # + the auth_query login
    assert "(d) PgBouncer, 10 clients, persistent connections" in out
    for figure in ("connection-overhead reduction (b) over (a):", "(b) as a fraction of the ceiling (c):"):
        assert figure in out, out
    assert re.search(r"\(d\) as a fraction of \(e\): +\d+%, with \d+ server connections instead of 10", out), out
    assert "archive_mode off" in out
    assert_nothing_left(run_dir, before)


def test_interrupted_bench_stops_its_servers_and_leaves_no_process(run_dir: Path) -> None:
    """Ctrl-C a second into the PgBouncer run (b) (runs of 6 s): the bench and its pgbench get SIGINT
    (the servers, in sessions of their own, do not), and the bench stops the servers."""
    before = process_list()
    bench = start_bench(run_dir, "--seconds", "6", "--clients", "5", "--persistent-clients", "10")
    lines: queue.Queue[str] = queue.Queue()

    def read_progress() -> None:
        for line in bench.stderr or []:
            lines.put(line)

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "running (b)" not in seen:
            assert time.monotonic() < deadline and bench.poll() is None, seen
            with contextlib.suppress(queue.Empty):
                seen += lines.get(timeout=1)
        time.sleep(1)
        running = " ".join(processes_under(run_dir).values())
        for program in ("postgres", "pgbouncer", "pgbench"):
            assert program in running, f"{program} not found among the run's processes: {running}"
        os.killpg(bench.pid, signal.SIGINT)
        bench.wait(timeout=60)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    reader.join(timeout=5)
    while not lines.empty():
        seen += lines.get()
    assert bench.returncode == 130, seen
    assert "interrupted (SIGINT); the servers were stopped" in seen
    assert_nothing_left(run_dir, before)


def test_failed_step_stops_the_servers(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pgbench fails in the PgBouncer run (b): the error ends the bench, and its servers are stopped."""
    monkeypatch.setattr(tempfile, "tempdir", str(run_dir))
    real = tools.bench.pgbench
    calls: list[list[str]] = []
    running_then: list[str] = []

    def fails_in_run_b(argv: list[str], password: str, timeout: float, cwd: Path) -> str:
        calls.append(argv)
        if len(calls) == 3:  # pgbench -i, run (a), run (b)
            running_then.extend(processes_under(run_dir).values())
            raise SystemExit("pgbench failed (injected)")
        return real(argv, password, timeout, cwd)

    monkeypatch.setattr(tools.bench, "pgbench", fails_in_run_b)
    before = process_list()
    with pytest.raises(SystemExit, match="injected"):
        tools.bench.main(SHORT)
    assert "-C" in calls[2], calls
    assert any("pgbouncer" in line for line in running_then), running_then
    assert any("postgres" in line for line in running_then), running_then
    assert_nothing_left(run_dir, before)


def test_postgres_stop_is_bounded_when_the_archive_command_cannot_reach_the_repository() -> None:
    """Postgres archives as deployed, to an S3 endpoint where nothing listens: pgBackRest's archive-push
    retries for minutes and a fast shutdown waits for it. stop() escalates and returns within its
    bound, and neither the archiver nor pgBackRest outlives it."""
    with services.environment(settings_for("prod")) as env:
        postgres = services.start_postgres(env)
        try:
            with psycopg.connect(postgres.superuser(), autocommit=True) as conn:
                conn.execute("CREATE TABLE filler AS SELECT g FROM generate_series(1, 100000) AS g")
                conn.execute("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 60
            archiving: dict[int, str] = {}
            while not any(line.startswith("pgbackrest") for line in archiving.values()):
                assert time.monotonic() < deadline, f"no archive-push started: {processes_under(env.base)}"
                time.sleep(0.2)
                archiving = processes_under(env.base)
            assert any("archiver" in line for line in archiving.values()), archiving
            started = time.monotonic()
        finally:
            postgres.stop()
        elapsed = time.monotonic() - started
        bound = services.FAST_SHUTDOWN_SECONDS + 5 + KILL_WAIT_SECONDS + 5
        assert elapsed < bound, f"stop() took {elapsed:.0f} s"
        left = processes_under(env.base)
        assert not left, f"left behind: {left}"
        assert not set(archiving) & set(processes_under(env.base))
