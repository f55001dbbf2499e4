"""The scaler service against a real Prometheus (Debian's) scraping a test exporter that serves chosen
signal values, and a fake Docker API (a Docker engine cannot run here) that records the calls and
refuses any request the real socket proxy would refuse."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from components.scaler import proxy_command
from configs.scaler import render_scaler_config
from harness import services
from harness.servers import Server, free_port
from harness.services import Environment
from model.loading import load_settings
from scaler.service import DockerApi, Prometheus, Scaler, ScalerConfig
from tools.plan import project_name, stack_config

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")
STACK = "prod"
ENGINE_API_VERSION = "1.44"  # Docker Engine 29.0-29.2 refuse anything older; the scaler must ask


class RequestCounter(Collector):
    """nginx_http_requests_total growing at a chosen rate, as nginx's exporter would report it."""

    def __init__(self) -> None:
        self.per_second = 0.0
        self.total = 0.0
        self.since = time.monotonic()

    def set_rate(self, per_second: float) -> None:
        self._advance()
        self.per_second = per_second

    def _advance(self) -> None:
        now = time.monotonic()
        self.total += self.per_second * (now - self.since)
        self.since = now

    def collect(self) -> Iterator[CounterMetricFamily]:
        self._advance()
        family = CounterMetricFamily("nginx_http_requests", "requests", labels=[])
        family.add_metric([], self.total)
        yield family


@dataclass
class FakeDocker:
    """The Docker Engine API endpoints the scaler uses, behind the proxy's allowlist."""

    replicas: int
    running: set[int]
    calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    rolling: set[int] = field(default_factory=set)  # replicas a deploy has created anew, the old one still there

    def containers(self) -> list[dict[str, Any]]:
        apps = [
            self._container(f"id-{index}", "app", index, index in self.running) for index in range(1, self.replicas + 1)
        ]
        new = [self._container(f"id-{index}-new", "app", index, True) for index in sorted(self.rolling)]
        return [*apps, *new, self._container("id-db", "postgres", None, True)]

    @staticmethod
    def _container(container_id: str, service: str, replica: int | None, running: bool) -> dict[str, Any]:
        labels = {"org.1001stories.stack": STACK, "org.1001stories.service": service}
        if replica is not None:
            labels["org.1001stories.replica"] = str(replica)
        return {"Id": container_id, "State": "running" if running else "exited", "Labels": labels}


def allowlist() -> dict[str, re.Pattern[str]]:
    flags = dict(flag.split("=", 1) for flag in proxy_command() if flag.startswith("-allow") and "=" in flag)
    return {"GET": re.compile(f"^{flags['-allowGET']}$"), "POST": re.compile(f"^{flags['-allowPOST']}$")}


def docker_handler(state: FakeDocker) -> type[BaseHTTPRequestHandler]:
    allowed = allowlist()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: Any = None) -> None:
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _handle(self) -> None:
            url = urllib.parse.urlparse(self.path)
            if not allowed.get(self.command, re.compile("$^")).match(url.path):
                state.refused.append(f"{self.command} {url.path}")
                self._reply(403, {"message": "forbidden by the proxy's allowlist"})
                return
            state.calls.append(f"{self.command} {url.path}")
            if url.path == "/version":
                self._reply(200, {"ApiVersion": ENGINE_API_VERSION})
                return
            if not url.path.startswith(f"/v{ENGINE_API_VERSION}/"):
                self._reply(400, {"message": f"client version is not {ENGINE_API_VERSION}"})
                return
            if self.command == "GET":
                wanted = json.loads(urllib.parse.parse_qs(url.query)["filters"][0])["label"]
                listed = [
                    c
                    for c in state.containers()
                    if all(c["Labels"].get(k) == v for k, v in (label.split("=", 1) for label in wanted))
                ]
                self._reply(200, listed)
                return
            index = int(url.path.split("/")[-2].removeprefix("id-"))
            (state.running.add if url.path.endswith("/start") else state.running.discard)(index)
            self._reply(204)

        do_GET = do_POST = _handle  # noqa: N815 (the names http.server dispatches to)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@dataclass
class Rig:
    scaler: Scaler
    docker: FakeDocker
    sessions: Gauge
    requests: RequestCounter
    prometheus: Server
    prometheus_url: str
    registry: CollectorRegistry

    def wait_for(self, query: str, expected: float, tolerance: float = 0.5, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = Prometheus(self.prometheus_url).value(query)
            if value is not None and abs(value - expected) <= tolerance:
                return
            time.sleep(0.5)
        raise AssertionError(f"{query} = {value}, expected {expected}:\n{self.prometheus.log()[-3000:]}")

    def decide_over(self, start: datetime, minutes: int) -> list[tuple[int, str]]:
        """Decisions once a minute of simulated time; the calls they made, by minute."""
        made = []
        for minute in range(minutes):
            before = len(self.docker.calls)
            self.scaler.run_once(start + timedelta(minutes=minute))
            made += [(minute, call) for call in self.docker.calls[before:] if call.startswith("POST")]
        return made


@pytest.fixture(scope="module")
def rig(environment: Environment) -> Iterator[Rig]:
    exporter = CollectorRegistry()
    sessions = Gauge("stories_active_sessions", "signed-in sessions", registry=exporter)
    requests = RequestCounter()
    exporter.register(requests)
    exporter_port = free_port()
    http_server, _ = start_http_server(exporter_port, addr="127.0.0.1", registry=exporter)
    prometheus, prometheus_port = services.start_prometheus(environment.base, [f"127.0.0.1:{exporter_port}"])
    docker = FakeDocker(replicas=3, running={1, 2})
    docker_server = ThreadingHTTPServer(("127.0.0.1", 0), docker_handler(docker))
    threading.Thread(target=docker_server.serve_forever, daemon=True).start()
    config, _ = stack_config(STACK)
    raw = json.loads(config[f"{project_name()}:settings"])
    raw["scaling"]["signalWindowSeconds"] = 10
    settings = load_settings(raw)
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    scaler_config = ScalerConfig.model_validate_json(
        render_scaler_config(settings, STACK, prometheus_url, f"http://127.0.0.1:{docker_server.server_port}")
    )
    registry = CollectorRegistry()
    scaler = Scaler(scaler_config, Prometheus(prometheus_url), DockerApi(scaler_config.docker_url, STACK), registry)
    yield Rig(scaler, docker, sessions, requests, prometheus, prometheus_url, registry)
    prometheus.stop()
    docker_server.shutdown()
    http_server.shutdown()


def reset(rig: Rig, running: set[int], rolling: set[int] | None = None) -> None:
    rig.docker.running = set(running)
    rig.docker.rolling = set(rolling or ())
    rig.docker.calls.clear()
    rig.scaler.history = type(rig.scaler.history)()


def test_school_hours_start_the_third_replica_and_max_is_never_exceeded(rig: Rig) -> None:
    reset(rig, {1, 2})
    rig.sessions.set(0)
    rig.wait_for("sum(stories_active_sessions)", 0)
    monday_ten = datetime(2027, 5, 10, 10, 0, tzinfo=BERLIN)
    assert rig.decide_over(monday_ten, 1) == [(0, f"POST /v{ENGINE_API_VERSION}/containers/id-3/start")]
    rig.sessions.set(10_000)
    rig.wait_for("sum(stories_active_sessions)", 10_000)
    assert rig.decide_over(monday_ten + timedelta(minutes=1), 5) == []
    assert rig.docker.running == {1, 2, 3} and not rig.docker.refused
    assert rig.registry.get_sample_value("stories_scaler_desired_replicas") == 3


def test_a_rolling_deploy_is_left_alone_until_it_is_done(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """During a deploy replica 1 has its old and its new container: the scaler starts and stops nothing
    (school hours would start replica 3), and once the old one is gone it decides again."""
    reset(rig, {1, 2}, rolling={1})
    rig.sessions.set(0)
    rig.wait_for("sum(stories_active_sessions)", 0)
    caplog.set_level(logging.INFO, logger="scaler")
    monday_ten = datetime(2027, 5, 10, 10, 0, tzinfo=BERLIN)
    assert rig.decide_over(monday_ten, 3) == []
    assert "a deploy is rolling (replica 1 old and new)" in caplog.text
    assert rig.registry.get_sample_value("stories_scaler_errors_total", {"kind": "docker"}) in (None, 0)
    rig.docker.rolling.clear()
    assert rig.decide_over(monday_ten + timedelta(minutes=3), 1) == [
        (0, f"POST /v{ENGINE_API_VERSION}/containers/id-3/start")
    ]


def test_night_scales_down_after_the_stabilisation_period_never_below_the_floor(rig: Rig) -> None:
    reset(rig, {1, 2, 3})
    rig.sessions.set(3)
    rig.wait_for("sum(stories_active_sessions)", 3)
    night = datetime(2027, 5, 10, 23, 0, tzinfo=BERLIN)
    assert rig.decide_over(night, 30) == [(10, f"POST /v{ENGINE_API_VERSION}/containers/id-3/stop")]
    assert rig.docker.running == {1, 2}  # the floor: app.replicas are Pulumi's and always run
    assert rig.registry.get_sample_value("stories_scaler_floor_replicas") == 2


def test_sessions_above_capacity_start_a_replica_at_night(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    reset(rig, {1, 2})
    rig.sessions.set(130)
    rig.wait_for("sum(stories_active_sessions)", 130)
    caplog.set_level(logging.INFO, logger="scaler")
    night = datetime(2027, 5, 11, 2, 0, tzinfo=BERLIN)
    assert rig.decide_over(night, 1) == [(0, f"POST /v{ENGINE_API_VERSION}/containers/id-3/start")]
    assert "130 sessions / 40 per replica" in caplog.text and "scale up 2 -> 3" in caplog.text


def test_request_rate_from_nginx_is_a_signal(rig: Rig) -> None:
    reset(rig, {1, 2})
    rig.sessions.set(0)
    rig.requests.set_rate(80)
    rig.wait_for(rig.scaler.config.queries["requests_per_second"], 80, tolerance=8)
    decision = rig.scaler.run_once(datetime(2027, 5, 11, 3, 0, tzinfo=BERLIN))
    assert decision is not None and decision.desired == 3 and "req/s / 25 per replica" in decision.reason
    rig.requests.set_rate(0)


def test_prometheus_down_keeps_the_count(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    reset(rig, {1, 2})
    rig.prometheus.stop()
    caplog.set_level(logging.INFO, logger="scaler")
    assert rig.scaler.run_once(datetime(2027, 5, 10, 10, 0, tzinfo=BERLIN)) is None
    assert [call for call in rig.docker.calls if call.startswith("POST")] == []
    assert rig.docker.running == {1, 2}
    assert "Prometheus unavailable, keeping 2 replicas" in caplog.text
    assert rig.registry.get_sample_value("stories_scaler_errors_total", {"kind": "prometheus"}) == 1


def test_docker_api_down_keeps_the_count(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scaler")
    registry = CollectorRegistry()
    unreachable = DockerApi(f"http://127.0.0.1:{free_port()}", STACK)
    scaler = Scaler(rig.scaler.config, Prometheus(rig.prometheus_url), unreachable, registry)
    assert scaler.run_once(datetime(2027, 5, 10, 10, 0, tzinfo=BERLIN)) is None
    assert "Docker API unavailable, keeping the current count" in caplog.text
    assert registry.get_sample_value("stories_scaler_errors_total", {"kind": "docker"}) == 1
