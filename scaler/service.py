"""The Docker target's scaler: every interval, read the load signals from Prometheus's HTTP API, apply
the policy, and start or stop app replicas through a Docker API proxy that allows only listing,
starting and stopping containers. It exports its own metrics and logs each decision with its reason.

Replicas 1..minReplicas are Pulumi's (always running); the scaler starts and stops only those above.
If Prometheus or Docker cannot be reached it keeps the current count and says why.

    python -m scaler.service --config /etc/stories/scaler/scaler.json
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import BaseModel, ConfigDict

from model.settings import ScalingSettings
from scaler.policy import Bounds, Decision, History, Policy, Signals, decide

LOG = logging.getLogger("scaler")
LABEL = "org.1001stories"
TIMEOUT_SECONDS = 10


class ScalerConfig(BaseModel):
    """What the program renders into scaler.json (configs/scaler.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    min_replicas: int
    max_replicas: int
    scaling: ScalingSettings
    prometheus_url: str
    docker_url: str
    queries: dict[str, str]
    metrics_port: int
    stop_timeout_seconds: int

    def policy(self) -> Policy:
        return Policy(self.scaling, Bounds(self.min_replicas, self.max_replicas))


class UnavailableError(Exception):
    """A dependency (Prometheus or the Docker API) did not answer usefully."""


def _request(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            body = response.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise UnavailableError(f"{method} {url}: {error}") from None
    return json.loads(body) if body else None


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def value(self, query: str) -> float | None:
        """The single value of an instant query, or None when the series does not exist."""
        answer = _request(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': query})}")
        if answer.get("status") != "success":
            raise UnavailableError(f"query {query!r}: {answer.get('error')}")
        result = answer["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


@dataclass(frozen=True)
class Replica:
    id: str
    index: int
    running: bool


class DockerApi:
    """The few Docker Engine API calls the proxy allows."""

    def __init__(self, url: str, stack: str) -> None:
        self.url = url.rstrip("/")
        self.stack = stack
        self._api_version: str | None = None

    def _endpoint(self, path: str) -> str:
        """`path` under the API version the engine itself speaks, asked once (GET /version): a pinned
        version breaks on some engine (Engine 29.0-29.2 refuse anything below 1.44, older engines
        anything above their own)."""
        if self._api_version is None:
            self._api_version = str(_request(f"{self.url}/version")["ApiVersion"])
        return f"{self.url}/v{self._api_version}{path}"

    def replicas(self) -> list[Replica]:
        filters = json.dumps({"label": [f"{LABEL}.stack={self.stack}", f"{LABEL}.service=app"]})
        query = urllib.parse.urlencode({"all": "1", "filters": filters})
        listed = _request(self._endpoint(f"/containers/json?{query}"))
        replicas = [
            Replica(item["Id"], int(item["Labels"][f"{LABEL}.replica"]), item["State"] == "running")
            for item in listed
            if f"{LABEL}.replica" in item.get("Labels", {})
        ]
        return sorted(replicas, key=lambda replica: replica.index)

    def start(self, replica: Replica) -> None:
        _request(self._endpoint(f"/containers/{replica.id}/start"), method="POST")

    def stop(self, replica: Replica, timeout_seconds: int) -> None:
        _request(self._endpoint(f"/containers/{replica.id}/stop?t={timeout_seconds}"), method="POST")


def rolling_indexes(replicas: list[Replica]) -> list[int]:
    """Replica numbers held by two containers: a deploy is replacing them (the new one is created before
    the old one goes), and what runs is Pulumi's business until it is done."""
    counted = collections.Counter(replica.index for replica in replicas)
    return sorted(index for index, count in counted.items() if count > 1)


def rolling_reason(indexes: list[int]) -> str:
    listed = ", ".join(str(index) for index in indexes)
    return f"a deploy is rolling (replica {listed} old and new): keeping the current count until it is done"


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.desired = Gauge("stories_scaler_desired_replicas", "Replicas the last decision wanted", registry=registry)
        self.running = Gauge("stories_scaler_running_replicas", "App replicas running", registry=registry)
        self.floor = Gauge("stories_scaler_floor_replicas", "The schedule's floor now", registry=registry)
        self.last = Gauge(
            "stories_scaler_last_decision_timestamp_seconds", "Time of the last decision", registry=registry
        )
        self.decisions = Counter("stories_scaler_decisions", "Decisions by reason code", ["code"], registry=registry)
        self.errors = Counter("stories_scaler_errors", "Rounds without a decision", ["kind"], registry=registry)


class Scaler:
    def __init__(self, config: ScalerConfig, prometheus: Prometheus, docker: DockerApi, registry: CollectorRegistry):
        self.config = config
        self.policy = config.policy()
        self.prometheus = prometheus
        self.docker = docker
        self.history = History()
        self.metrics = Metrics(registry)

    def signals(self) -> Signals:
        values = {name: self.prometheus.value(query) for name, query in self.config.queries.items()}
        return Signals(values.get("active_sessions"), values.get("requests_per_second"), values.get("cpu_percent"))

    def run_once(self, now: datetime) -> Decision | None:
        try:
            replicas = self.docker.replicas()
        except UnavailableError as error:
            self._skip("docker", f"Docker API unavailable, keeping the current count: {error}")
            return None
        running = [replica for replica in replicas if replica.running]
        self.metrics.running.set(len(running))
        rolling = rolling_indexes(replicas)
        if rolling:
            LOG.info(json.dumps({"time": now.isoformat(), "action": "none", "reason": rolling_reason(rolling)}))
            return None
        try:
            signals = self.signals()
        except UnavailableError as error:
            self._skip("prometheus", f"Prometheus unavailable, keeping {len(running)} replicas: {error}")
            return None
        decision = decide(self.policy, now, signals, len(running), self.history)
        action = self._act(decision, replicas)
        self.metrics.desired.set(decision.desired)
        self.metrics.floor.set(decision.floor)
        self.metrics.last.set(now.timestamp())
        self.metrics.decisions.labels(decision.code).inc()
        LOG.info(
            json.dumps(
                {
                    "time": now.isoformat(),
                    "running": len(running),
                    "desired": decision.desired,
                    "code": decision.code,
                    "action": action,
                    "reason": decision.reason,
                }
            )
        )
        return decision

    def _skip(self, kind: str, why: str) -> None:
        self.metrics.errors.labels(kind).inc()
        LOG.warning(json.dumps({"time": datetime.now(UTC).isoformat(), "action": "none", "reason": why}))

    def _act(self, decision: Decision, replicas: list[Replica]) -> str:
        running = [replica for replica in replicas if replica.running]
        if decision.desired > len(running):
            stopped = [r for r in replicas if not r.running and r.index <= self.config.max_replicas]
            if not stopped:
                return "none: no stopped replica to start"
            self.docker.start(stopped[0])
            return f"started replica {stopped[0].index}"
        if decision.desired < len(running):
            optional = [r for r in running if r.index > self.config.min_replicas]
            if not optional:
                return "none: only Pulumi-managed replicas are running"
            self.docker.stop(optional[-1], self.config.stop_timeout_seconds)
            return f"stopped replica {optional[-1].index}"
        return "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    config = ScalerConfig.model_validate_json(args.config.read_text())
    registry = CollectorRegistry()
    start_http_server(config.metrics_port, registry=registry)
    scaler = Scaler(config, Prometheus(config.prometheus_url), DockerApi(config.docker_url, config.stack), registry)
    while True:
        started = time.monotonic()
        scaler.run_once(datetime.now(UTC))
        time.sleep(max(1.0, config.scaling.interval_seconds - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())
