"""The real Docker engine: a client, a tiny probe image built here, and a sandbox per test.

Nothing can be pulled, so the probe image is `docker import` of a tar holding Debian's static busybox
(package busybox-static). Every test names its resources `e2etest-<hex>-...`; the sandbox removes all
of them after the test, whatever happened, and a failed test's report shows its containers' logs.
"""

from __future__ import annotations

import io
import ipaddress
import json
import random
import secrets
import shutil
import struct
import tarfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import urllib3
from docker.errors import ImageNotFound, NotFound

from e2e.stack import STACK, Running, down, stack_logs, up

PROBE_IMAGE = "stories-e2e/probe:1"
_APPLETS = ("sh", "sleep", "true", "test", "cat", "ls", "stat", "id", "touch", "timeout", "nslookup", "httpd", "wget")
_PT_INTERP = 3  # ELF program header type of a dynamic binary's loader


def _is_static_elf(path: Path) -> bool:
    """True for a 64-bit little-endian ELF without a program interpreter (no dynamic loader)."""
    head = path.read_bytes()[:8192]
    if head[:6] != b"\x7fELF\x02\x01":
        return False
    (program_headers,) = struct.unpack_from("<Q", head, 0x20)
    entry_size, entries = struct.unpack_from("<HH", head, 0x36)
    types = [struct.unpack_from("<I", head, program_headers + i * entry_size)[0] for i in range(entries)]
    return _PT_INTERP not in types


def _probe_rootfs(busybox: Path) -> bytes:
    """A root filesystem: /bin/busybox, its applets as symlinks, /etc and a world-writable /tmp."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            archive.addfile(info)
        archive.add(busybox, arcname="bin/busybox")
        for applet in _APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(info)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def probe_image(engine: docker.DockerClient) -> str:
    """`stories-e2e/probe:1`, built once per machine (kept between runs)."""
    try:
        engine.images.get(PROBE_IMAGE)
    except ImageNotFound:
        found = shutil.which("busybox")
        if found is None or not _is_static_elf(Path(found)):
            pytest.fail(f"the probe image needs a static busybox; found {found!r}: apt-get install busybox-static")
        repository, tag = PROBE_IMAGE.split(":")
        engine.api.import_image_from_data(
            _probe_rootfs(Path(found)),
            repository=repository,
            tag=tag,
            changes=["ENV PATH=/bin", 'CMD ["sleep", "3600"]'],
        )
    return PROBE_IMAGE


@dataclass
class Sandbox:
    """The names one test may use, and their removal."""

    client: docker.DockerClient
    image: str
    prefix: str = field(default_factory=lambda: f"e2etest-{secrets.token_hex(4)}-")
    _subnets: list[str] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return self.prefix + suffix

    def subnet(self) -> str:
        """A 10.213.x.0/24 that no network on this engine (nor this test) uses yet."""
        taken = {
            config.get("Subnet")
            for network in self.client.api.networks()
            for config in (network.get("IPAM") or {}).get("Config") or []
        }
        free = [f"10.213.{x}.0/24" for x in range(256) if f"10.213.{x}.0/24" not in taken | set(self._subnets)]
        subnet = str(ipaddress.ip_network(random.choice(free)))
        self._subnets.append(subnet)
        return subnet

    def _mine(self, names: list[str]) -> list[str]:
        return [name for name in names if name.startswith(self.prefix)]

    def containers(self) -> list[str]:
        listed = self.client.api.containers(all=True, filters={"name": self.prefix})
        return self._mine([container["Names"][0].lstrip("/") for container in listed])

    def logs(self) -> str:
        sections = []
        for name in self.containers():
            text = self.client.api.logs(name, tail=200).decode(errors="replace")
            sections.append(f"--- {name}\n{text}")
        return "\n".join(sections) or "(no containers)"

    def remove_all(self) -> None:
        api = self.client.api
        for name in self.containers():
            api.remove_container(name, v=True, force=True)
        for name in self._mine([network["Name"] for network in api.networks()]):
            api.remove_network(name)
        for name in self._mine([volume["Name"] for volume in api.volumes().get("Volumes") or []]):
            try:
                api.remove_volume(name, force=True)
            except NotFound:
                continue


@pytest.fixture
def sandbox(engine: docker.DockerClient, probe_image: str) -> Iterator[Sandbox]:
    box = Sandbox(engine, probe_image)
    try:
        yield box
    finally:
        box.remove_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a sandbox shows its containers' logs (taken before the cleanup)."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    box = funcargs.get("sandbox")
    if report.failed and call.when == "call" and isinstance(box, Sandbox):
        report.sections.append(("container logs", box.logs()))
    if report.failed and call.when == "call" and "stack" in funcargs:
        report.sections.append(("e2e stack logs", stack_logs(funcargs["engine"])))
    return report


# Measured figures of the engine tests (the README reports them), printed at the end of the run.
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("measured on the real engine")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def stack(engine: docker.DockerClient) -> Iterator[Running]:
    """The e2e stack (e2e/stack.py), up once for every module that asks for it, and removed at the end."""
    started = time.monotonic()
    try:
        running = up(engine, log=lambda line: None)
    except Exception:
        print(stack_logs(engine))
        down(engine, log=lambda line: None)
        raise
    FIGURES["e2e: apply (networks, volumes, containers)"] = f"{running.apply_seconds:.1f} s"
    FIGURES["e2e: apply until every service is healthy"] = f"{running.healthy_seconds:.1f} s"
    yield running
    down(engine, log=lambda line: None)
    FIGURES["e2e: wall time of the stack's checks (up, checks, down)"] = f"{time.monotonic() - started:.0f} s"


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 2.0) -> Any:
    """The first truthy result of `check` within `timeout` seconds; an error on the way (a service not yet
    answering, an answer not yet complete) is tried again, and shown when time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def started_by_the_scaler(engine: docker.DockerClient, replica: Any) -> bool:
    """Whether the scaler's log says it started `replica` (a container above app.replicas, created stopped)
    after the container was created: the load of an earlier test may have made it do so."""
    created = _docker_time(replica.attrs["Created"])
    logs = engine.containers.get(f"{STACK}-scaler").logs(since=created).decode(errors="replace")
    decisions = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return f"started replica {replica.labels['org.1001stories.replica']}" in {d["action"] for d in decisions}


def _docker_time(timestamp: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds as a datetime (microseconds)."""
    seconds, _, fraction = timestamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{seconds}.{fraction[:6] or '0'}+00:00")
