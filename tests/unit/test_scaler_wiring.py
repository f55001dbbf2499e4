"""The scaler in the Docker target, against mocks: a proxy that allows only list/start/stop, a
non-root read-only scaler built from this repository, and Prometheus scraping it."""

from __future__ import annotations

import json
import re

import yaml

from components.scaler import proxy_command
from configs.metrics import METRICS, metric_names
from configs.scaler import signal_queries
from scaler.service import ScalerConfig
from tests.conftest import plan_of
from tests.unit.test_plan_stacks import containers, label, networks_of, uploaded
from tools.plan import CONTAINER, settings_for


def test_proxy_allows_listing_starting_and_stopping_only() -> None:
    flags = proxy_command()
    allowed = dict(flag.split("=", 1) for flag in flags if flag.startswith("-allow") and "=" in flag)
    assert set(allowed) == {"-allowfrom", "-allowGET", "-allowPOST"}
    get, post = re.compile(f"^{allowed['-allowGET']}$"), re.compile(f"^{allowed['-allowPOST']}$")
    assert get.match("/v1.43/containers/json") and not get.match("/v1.43/containers/abc/json")
    # The scaler asks the engine's API version first (Docker Engine 29.0-29.2 refuse below 1.44).
    assert get.match("/version") and get.match("/v1.44/version") and not get.match("/v1.44/info")
    assert post.match("/v1.43/containers/3f2a/start") and post.match("/v1.43/containers/prod-app-3/stop")
    for forbidden in (
        "/v1.43/containers/create",
        "/v1.43/containers/abc/exec",
        "/v1.43/containers/abc/kill",
        "/v1.43/images/create",
        "/v1.43/containers/abc/start/../exec",
    ):
        assert not post.match(forbidden), forbidden
    assert allowed["-allowfrom"] == "scaler"


def test_scaler_and_proxy_containers() -> None:
    plan = plan_of("prod")
    running = containers(plan)
    proxy, scaler = running["socket-proxy"], running["scaler"]
    assert networks_of(proxy) == {"control"}
    assert networks_of(scaler) == {"control", "monitoring"}
    (socket,) = proxy["volumes"]
    assert socket == {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock", "readOnly": True}
    assert not any(v.get("hostPath") == "/var/run/docker.sock" for v in scaler.get("volumes", []))
    assert proxy["user"].startswith("65534:") and scaler["user"] == "10001:10001"
    assert proxy["readOnly"] and scaler["readOnly"]
    config = ScalerConfig.model_validate_json(uploaded(plan, "scaler")["/etc/stories/scaler/scaler.json"])
    assert (config.min_replicas, config.max_replicas) == (2, 3)
    assert config.docker_url == "http://socket-proxy:2375" and config.stack == "prod"
    (image,) = [i for i in plan.of_type("docker:index/image:Image") if i.name == "scaler-image"]
    assert image.inputs["build"]["dockerfile"] == "scaler/Dockerfile" and image.inputs["build"]["context"] == "."
    assert re.fullmatch(r"stories-scaler:1\.0\.0-[0-9a-f]{12}", image.inputs["imageName"])
    prometheus = yaml.safe_load(uploaded(plan, "prometheus")["/etc/stories/prometheus/prometheus.yml"])
    assert {"job_name": "scaler", "static_configs": [{"targets": ["scaler:9400"]}]} in prometheus["scrape_configs"]


def test_dev_has_no_scaler() -> None:
    running = containers(plan_of("dev"))
    assert "scaler" not in running and "socket-proxy" not in running


def test_signal_queries_use_only_provided_metrics() -> None:
    for query in signal_queries(settings_for("prod"), "prod").values():
        assert metric_names(query) <= set(METRICS), query


def test_scaler_config_is_the_settings() -> None:
    settings = settings_for("prod")
    plan = plan_of("prod")
    rendered = json.loads(uploaded(plan, "scaler")["/etc/stories/scaler/scaler.json"])
    assert rendered["scaling"]["seasons"][2] == {
        "name": "exams",
        "start": "2027-06-07",
        "end": "2027-06-18",
        "factor": 2.5,
    }
    assert ScalerConfig.model_validate(rendered).scaling == settings.scaling


def test_the_scaler_sees_the_replicas_and_nothing_else() -> None:
    """The scaler lists containers labelled with the stack, service app and a replica number: exactly the
    replicas, never their config containers (created, never started: starting one would be a bug)."""
    plan = plan_of("prod")
    selected = [
        r.name
        for r in plan.of_type(CONTAINER)
        if label(r.inputs, "stack") == "prod" and label(r.inputs, "service") == "app" and label(r.inputs, "replica")
    ]
    assert sorted(selected) == ["app-1", "app-2", "app-3"]
