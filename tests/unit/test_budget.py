"""The host budget that `make plan` ends with, checked against the settings and the planned containers."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import pytest

from model.settings import Settings
from model.tuning import container_budget
from tests.conftest import plan_of
from tools.plan import (
    CONTAINER,
    STACKS,
    Plan,
    format_table,
    host_budget,
    project_name,
    run_plan,
    settings_for,
    settings_of,
    stack_config,
)

Usage = tuple[float, float, float]  # memory limit (MB), memory reservation (MB), cpus


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {str(item["label"]).rsplit(".", 1)[-1]: str(item["value"]) for item in inputs.get("labels", [])}


def started_containers(plan: Plan) -> dict[str, list[Usage]]:
    """Service -> the usage of each of its containers in the plan, config containers (never started) apart."""
    by_service: dict[str, list[Usage]] = defaultdict(list)
    for resource in plan.of_type(CONTAINER):
        labels, inputs = _labels(resource.inputs), resource.inputs
        if labels.get("role") != "config":
            by_service[labels["service"]].append((inputs["memory"], inputs["memoryReservation"], float(inputs["cpus"])))
    return by_service


def one_shots(plan: Plan) -> set[str]:
    """Services whose containers run once and exit (restart "no"), config containers apart."""
    return {
        _labels(r.inputs)["service"]
        for r in plan.of_type(CONTAINER)
        if r.inputs.get("restart") == "no" and _labels(r.inputs).get("role") != "config"
    }


def expected_budget(plan: Plan, settings: Settings) -> dict[str, Any]:
    """The budget from the plan's own container inputs and the host settings: the containers of every
    service the budget counts (every one that keeps running, and the one-shots it names), each once,
    the app's replica maxReplicas times whatever number of replicas the stack creates."""
    by_service = started_containers(plan)
    counted = set(container_budget(settings))
    assert set(by_service) - counted <= one_shots(plan), "a container that keeps running is missing from the budget"
    assert counted <= set(by_service), "the budget counts a service the plan does not create"
    (app,) = set(by_service.pop("app"))
    running = [
        *(usage for service, usages in by_service.items() if service in counted for usage in usages),
        *[app] * settings.app.max_replicas,
    ]
    used = {
        "memoryMb": sum(limit for limit, _, _ in running),
        "memoryReservationMb": sum(reservation for _, reservation, _ in running),
        "cpus": sum(cpus for _, _, cpus in running),
    }
    memory, cpus = settings.host.memory_mb, settings.host.cpus
    host = {"memoryMb": memory, "memoryReservationMb": memory, "cpus": cpus}
    return {
        "containers": len(running),
        "appReplicas": settings.app.max_replicas,
        **{
            key: {"used": used[key], "host": host[key], "headroomPercent": (host[key] - used[key]) / host[key] * 100}
            for key in used
        },
    }


def assert_budget(budget: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(budget) == set(expected)
    assert (budget["containers"], budget["appReplicas"]) == (expected["containers"], expected["appReplicas"])
    for key in ("memoryReservationMb", "memoryMb", "cpus"):
        assert set(budget[key]) == {"used", "host", "headroomPercent"}, key
        assert budget[key]["used"] == pytest.approx(expected[key]["used"]), key
        assert budget[key]["host"] == expected[key]["host"], key
        assert budget[key]["headroomPercent"] == pytest.approx(expected[key]["headroomPercent"], abs=0.051), key


def with_settings(stack: str, change: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The stack's config with some settings sections updated."""
    config, _ = stack_config(stack)
    key = f"{project_name()}:settings"
    settings = json.loads(config[key])
    for section, values in change.items():
        settings[section] = {**settings.get(section, {}), **values}
    return {**config, key: json.dumps(settings)}


@pytest.mark.parametrize("stack", [*STACKS, "e2e"])
def test_budget_sums_what_the_host_runs(stack: str) -> None:
    plan = plan_of(stack)
    assert_budget(plan.budget, expected_budget(plan, settings_for(stack)))
    assert plan.as_json()["budget"] == plan.budget


def test_config_containers_count_nothing() -> None:
    plan = plan_of("prod")
    config = [r.inputs for r in plan.of_type(CONTAINER) if _labels(r.inputs).get("role") == "config"]
    assert config and not any(inputs["start"] for inputs in config)  # created, never started
    expected = expected_budget(plan, settings_for("prod"))  # leaves them out
    assert_budget(plan.budget, expected)
    assert sum(inputs["memoryReservation"] for inputs in config) > 0


def test_the_app_counts_at_max_replicas_when_fewer_are_created() -> None:
    plan = plan_of("dev")  # dev runs no scaler: it creates `replicas` app containers, fewer than maxReplicas
    settings = settings_for("dev")
    assert len(started_containers(plan)["app"]) == settings.app.replicas < settings.app.max_replicas
    assert plan.budget["appReplicas"] == settings.app.max_replicas
    assert_budget(plan.budget, expected_budget(plan, settings))


@pytest.mark.parametrize(
    ("stack", "change"),
    [
        ("staging", {"host": {"memoryMb": 3072}}),
        ("staging", {"host": {"cpus": 16}}),
        ("staging", {"app": {"maxReplicas": 5}}),
        ("dev", {"monitoring": {"enabled": False}}),  # dev has no scaler, which needs monitoring
    ],
)
def test_budget_follows_the_settings(stack: str, change: dict[str, dict[str, Any]]) -> None:
    before = host_budget(settings_for(stack))
    settings = settings_of(with_settings(stack, change))
    budget = host_budget(settings)
    for key, host in (("memoryReservationMb", settings.host.memory_mb), ("memoryMb", settings.host.memory_mb)):
        assert budget[key]["host"] == host
        assert budget[key]["headroomPercent"] == pytest.approx((host - budget[key]["used"]) / host * 100, abs=0.051)
    assert budget["cpus"]["host"] == settings.host.cpus
    assert budget["cpus"]["headroomPercent"] == pytest.approx(
        (settings.host.cpus - budget["cpus"]["used"]) / settings.host.cpus * 100, abs=0.051
    )
    if "app" in change:
        extra, app = change["app"]["maxReplicas"] - before["appReplicas"], settings.app.resources
        assert budget["containers"] == before["containers"] + extra
        assert budget["memoryMb"]["used"] == before["memoryMb"]["used"] + extra * app.memory_mb
        assert budget["memoryReservationMb"]["used"] == before["memoryReservationMb"]["used"] + (
            extra * app.memory_reservation_mb
        )
        assert budget["cpus"]["used"] == pytest.approx(before["cpus"]["used"] + extra * app.cpus)
    if "monitoring" in change:
        assert budget["containers"] < before["containers"]
        assert budget["memoryMb"]["used"] < before["memoryMb"]["used"]


def test_a_plan_reports_the_budget_of_the_config_it_was_given() -> None:
    config = with_settings("dev", {"host": {"memoryMb": 2048, "cpus": 2}})
    _, secret_keys = stack_config("dev")
    plan = run_plan("dev", config, secret_keys)
    settings = settings_of(config)
    assert (settings.host.memory_mb, settings.host.cpus) == (2048, 2)
    assert_budget(plan.budget, expected_budget(plan, settings))
    assert plan.budget["memoryMb"]["headroomPercent"] < 0  # limits may add up to more than the host has


@pytest.mark.parametrize("stack", STACKS)
def test_the_table_ends_with_the_budget(stack: str) -> None:
    """The table shows the budget's numbers (checked against the settings above), one line each."""
    plan = plan_of(stack)
    budget = plan.budget
    *_, blank, heading, header, reservations, limits, cpus = format_table(plan).splitlines()
    assert blank == ""
    assert heading.startswith(f"Host budget: {budget['containers']} containers")
    assert f"maxReplicas ({settings_for(stack).app.max_replicas})" in heading
    assert re.split(r"\s{2,}", header.strip()) == ["budget", "sum", "host", "headroom"]
    for line, label, key, unit in (
        (reservations, "memory reservations", "memoryReservationMb", " MB"),
        (limits, "memory limits", "memoryMb", " MB"),
        (cpus, "cpus", "cpus", ""),
    ):
        row = budget[key]
        assert re.split(r"\s{2,}", line.strip()) == [
            label,
            f"{row['used']:g}{unit}",
            f"{row['host']:g}{unit}",
            f"{row['headroomPercent']:g}%",
        ]
