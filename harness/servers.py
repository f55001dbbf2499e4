"""Starting the real servers (Debian's packages) on loopback: for the integration tests, `make bench`
and the restore drills.

Each server runs as an unprivileged system user, on a free 127.0.0.1 port, with files rendered by the
same functions the components use and placed by `loopback_topology`. A server that does not become
ready in time fails the test with its log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
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


def run_as(user: User, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), preexec_fn=user.preexec(), capture_output=True, text=True, check=False)


class Server:
    """A server process with its log file; `stop` ends it, `log` is shown when a test fails."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        user: User,
        log: Path,
        env: dict[str, str] | None = None,
        new_session: bool = False,
    ):
        self.new_session = new_session
        self.name = name
        self.argv = list(argv)
        self.user = user
        self.log_path = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.user.preexec(),
            env=self.env,
            start_new_session=self.new_session,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def stop(self, sig: int = 15) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop_group(self, sig: int) -> None:
        """Signal the whole process group (a start script and what it started), then make sure it ended."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

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
