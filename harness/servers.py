"""Starting the real servers (Debian's packages) on loopback: for the integration tests, `make bench`
and the restore drills.

Each server runs as an unprivileged system user, on a free 127.0.0.1 port, with files rendered by the
same functions the components use and placed by `loopback_topology`. A server that does not become
ready in time fails the test with its log.

Every stop is bounded and leaves nothing behind: the server's stop signals in turn, each with a deadline,
then SIGKILL to every process of the server. Its session does not hold them all: Postgres's children
make themselves session leaders, and when the postmaster dies they (and the `archive_command` they run)
live on as orphans of init. So a server's processes are its session's members, the processes that
write to its log (all inherit its standard output and error) and, while its main process has not been
reaped, that process's descendants.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from configs.render import ServerVersions

PG_BIN = Path("/usr/lib/postgresql/15/bin")


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port that is free now and that no other server of this run was given. It lies
    outside the kernel's ephemeral range: a port from there can be taken as the source port of some
    client connection between the moment it is chosen and the moment the server binds it."""
    low, high = _ephemeral_range()
    candidates = range(20000, low) if low > 21000 else range(high + 1, 65535)
    for _ in range(500):
        port = random.choice(candidates)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise AssertionError(f"no free loopback port in {candidates}")


def _version(argv: Sequence[str], pattern: str) -> tuple[int, ...]:
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    match = re.search(pattern, result.stdout + result.stderr)
    assert match, f"no version in the output of {argv}"
    return tuple(int(part) for part in match.group(1).split("."))


def installed_versions() -> ServerVersions:
    """The versions of the servers on this machine, so version-specific keys are rendered for them."""
    return ServerVersions(
        postgres=_version([str(PG_BIN / "postgres"), "--version"], r"(\d+\.\d+)"),
        pgbouncer=_version(["pgbouncer", "--version"], r"PgBouncer (\d+\.\d+\.\d+)"),
        redis=_version(["redis-server", "--version"], r"v=(\d+\.\d+\.\d+)"),
        nginx=_version(["nginx", "-v"], r"nginx/(\d+\.\d+\.\d+)"),
    )


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def preexec(self) -> Callable[[], None] | None:
        if os.geteuid() != 0:
            return None

        def drop() -> None:
            os.setgid(self.gid)
            os.setuid(self.uid)

        return drop

    def own(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            for path in paths:
                for item in [path, *path.rglob("*")]:
                    os.chown(item, self.uid, self.gid)


def service_user(name: str) -> User:
    """The named system user when running as root (servers refuse root), else whoever runs the tests."""
    entry = pwd.getpwuid(os.geteuid()) if os.geteuid() != 0 else pwd.getpwnam(name)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def run_as(user: User, argv: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), preexec_fn=user.preexec(), capture_output=True, text=True, timeout=timeout, check=False
    )


KILL_WAIT_SECONDS = 5.0
"""How long a stop waits for SIGKILLed processes to disappear."""


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    comm: str


def process_table() -> dict[int, ProcessInfo]:
    """Every process on the machine, from /proc/<pid>/stat."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid, pgid, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        table[int(entry.name)] = ProcessInfo(int(entry.name), int(ppid), int(pgid), int(sid), state, comm)
    return table


def _writes_to(pid: int, identity: tuple[int, int]) -> bool:
    """Whether the process's standard output or error is the file with this (st_dev, st_ino)."""
    for fd in (1, 2):
        try:
            target = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (target.st_dev, target.st_ino) == identity:
            return True
    return False


def _descendants(root: int, table: dict[int, ProcessInfo]) -> set[int]:
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


_RUNNING: set[Server] = set()


class Server:
    """A server process with its log file; `stop` ends it and all it started, `log` is shown when a test fails.

    `stop_steps` is how the server is asked to stop: (signal, seconds to wait for it) in turn. After the
    last step, whatever of the server remains gets SIGKILL. The default is SIGTERM and 20 s.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        user: User,
        log: Path,
        env: dict[str, str] | None = None,
        new_session: bool = True,
        stop_steps: Sequence[tuple[int, float]] = ((signal.SIGTERM, 20.0),),
    ):
        self.new_session = new_session
        self.name = name
        self.argv = list(argv)
        self.user = user
        self.log_path = log
        self.env = env
        self.stop_steps = tuple(stop_steps)
        self.log_identity = (0, 0)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """In a session of its own (unless `new_session=False`): a Ctrl-C at the terminal reaches the
        caller, which stops its servers in order, and not the servers themselves halfway."""
        with self.log_path.open("ab") as log:
            status = os.fstat(log.fileno())
            self.log_identity = (status.st_dev, status.st_ino)
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.user.preexec(),
                env=self.env,
                start_new_session=self.new_session,
            )
        _RUNNING.add(self)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def running(self) -> list[ProcessInfo]:
        """The processes of this server that still run (zombies excluded): the members of its session
        (the kernel does not reuse the session's id while a member lives), those writing to its log,
        and, while its main process has not been reaped (so that its pid cannot have been reused), that
        process and its descendants."""
        if self.process is None:
            return []
        table = process_table()
        root = self.process.pid
        pids = {info.pid for info in table.values() if _writes_to(info.pid, self.log_identity)}
        if self.new_session:
            pids |= {info.pid for info in table.values() if root in (info.sid, info.pgid)}
        if self.process.returncode is None and root in table:
            pids |= {root, *_descendants(root, table)}
        return [table[pid] for pid in sorted(pids) if pid in table and table[pid].state != "Z"]

    def stop(self, sig: int | None = None, timeout: float = 20) -> None:
        """`sig` (default: this server's own stop steps), up to `timeout` seconds for the server to end,
        then SIGKILL to all that is left of it. Returns within the steps' seconds plus KILL_WAIT_SECONDS."""
        self.stop_escalating(self.stop_steps if sig is None else [(sig, timeout)])

    def stop_group(self, sig: int, timeout: float = 20) -> None:
        """Signal the whole process group (a start script and what it started), then make sure it ended."""
        self.stop_escalating([(sig, timeout)], group=True)

    def stop_escalating(self, steps: Sequence[tuple[int, float]], group: bool = False) -> None:
        """Each (signal, seconds) in turn until the main process has ended, then SIGKILL to everything
        of the server that still runs (see `running`), until none is left or KILL_WAIT_SECONDS pass."""
        process = self.process
        if process is None:
            return
        for sig, seconds in steps:
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group and self.new_session:
                    os.killpg(process.pid, sig)
                else:
                    process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=seconds)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while True:
            left = self.running()
            _signal((info.pid for info in left), signal.SIGKILL)
            if process.returncode is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.1)
            if not left and process.returncode is not None:
                break
            if time.monotonic() > deadline:
                names = ", ".join(f"{info.pid} {info.comm} ({info.state})" for info in left)
                print(f"{self.name}: still running after SIGKILL: {names}", file=sys.stderr)
                break
            time.sleep(0.05)
        _RUNNING.discard(self)

    def wait_for_port(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            with socket.socket() as sock:
                listening = sock.connect_ex(("127.0.0.1", port)) == 0
            if listening:
                time.sleep(0.1)  # something answers: make sure it is this server, still running
                if self.process and self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not listen on {port} in {timeout}s:\n{self.log()}")


@contextlib.contextmanager
def logs_on_failure(*servers: Server, tail: int = 20000) -> Iterator[None]:
    """When the block fails, the end of each server's log on standard error: a command-line run has no
    test report to show them in, and the logs go with the run's directory."""
    try:
        yield
    except (Exception, SystemExit):
        for server in servers:
            print(f"--- {server.name} log ({server.log_path}) ---\n{server.log()[-tail:]}", file=sys.stderr)
        raise


def stop_running(under: Path | None = None, seconds: float = 5.0) -> None:
    """The safety net: stop every server still running (whose log lies under `under`, if given), each with
    its first stop signal and `seconds`, then SIGKILL. Run when an environment closes and at exit, so that
    a failed or interrupted caller leaves no server behind."""
    for server in list(_RUNNING):
        if under is None or server.log_path.is_relative_to(under):
            server.stop_escalating([(server.stop_steps[0][0], seconds)] if server.stop_steps else [])


atexit.register(stop_running)


def write(path: Path, content: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)
    return path


def make_certificates(directory: Path, server_names: Sequence[str], client_cn: str) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA")
    # An address also goes in as a DNS name: pgBackRest 2.45 matches the host only against DNS names.
    san = ",".join(f"IP:{name},DNS:{name}" if name[0].isdigit() else f"DNS:{name}" for name in server_names)
    for name, subject, extension in (
        ("server", f"/CN={server_names[0]}", f"subjectAltName={san}"),
        ("client", f"/CN={client_cn}", "extendedKeyUsage=clientAuth"),
    ):
        openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        (directory / f"{name}.ext").write_text(extension + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return {name: directory / name for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def copy(source: Path, target: Path, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def which(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed (see .ci/run)"
    return path
