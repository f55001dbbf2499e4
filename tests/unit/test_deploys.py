"""How a deploy replaces what changed (README "Deploys"): the app's replicas roll under names that change
with their definition, one after the other, each healthy before the next, the old ones stopped with grace
after all new ones run; nginx reloads a new nginx.conf instead of being replaced; every other service keeps
its fixed name and is replaced delete-first. (On the real engine: tests/engine/test_deploys.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import plan_of
from tests.unit.test_plan_stacks import config_containers, containers, label
from tools.plan import CONTAINER, Plan, PlanMocks, run_plan, run_program, settings_for, stack_config

Change = Callable[[dict[str, Any]], None]


def changed_plan(stack: str, change: Change) -> Plan:
    """The stack's plan after `change` to its settings, as an operator edits the stack file."""
    config, secret_keys = stack_config(stack)
    settings = json.loads(config["1001-stories:settings"])
    change(settings)
    return run_plan(stack, {**config, "1001-stories:settings": json.dumps(settings)}, secret_keys)


def replica_names(plan: Plan) -> dict[str, str]:
    return {name: str(inputs["name"]) for name, inputs in containers(plan).items() if label(inputs, "replica")}


def new_app_image(settings: dict[str, Any]) -> None:
    settings["app"]["image"] = settings["app"]["image"].rsplit(":", 1)[0] + ":9.9.9"


def more_redis_memory(settings: dict[str, Any]) -> None:
    settings.setdefault("redis", {})["maxmemoryMb"] = 200


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_replicas_are_named_by_their_generation_and_config_containers_are_not(stack: str) -> None:
    plan = plan_of(stack)
    for name, full in replica_names(plan).items():
        assert re.fullmatch(rf"{stack}-{name}-[0-9a-f]{{8}}", full), full
        assert config_containers(plan)[name]["name"] == f"{stack}-{name}-config"


def test_a_new_app_image_renames_every_replica_and_nothing_else_does() -> None:
    before = replica_names(plan_of("prod"))
    assert replica_names(plan_of("prod")) == before, "the same settings, the same generation"
    after = replica_names(changed_plan("prod", new_app_image))
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    assert replica_names(changed_plan("prod", more_redis_memory)) == before


def test_only_the_replicas_are_created_before_the_old_ones_go() -> None:
    """Pulumi creates a replacement first unless a resource says deleteBeforeReplace: fixed names must."""
    plan = plan_of("prod")
    for resource in plan.of_type(CONTAINER):
        rolling = label(resource.inputs, "replica") is not None
        assert resource.delete_before_replace is not rolling, resource.name


def test_replicas_wait_healthy_and_stop_with_grace() -> None:
    settings = settings_for("prod")
    for name, inputs in containers(plan_of("prod")).items():
        if label(inputs, "replica") is None:
            continue
        started = int(name.rsplit("-", 1)[1]) <= settings.app.replicas
        assert inputs.get("wait", False) is started and (inputs.get("waitTimeout", 0) > 60) is started, name
        assert inputs["destroyGraceSeconds"] == inputs["stopTimeout"] > 0, name


def test_replicas_register_one_after_the_other() -> None:
    """Each replica depends on the one before it: Pulumi (and the e2e applier) create them in turn."""
    resources, _ = run_program("prod", PlanMocks())
    order = [r.name for r in resources if r.type == CONTAINER and r.name.startswith("app-") and r.name[4:].isdigit()]
    assert order == ["app-1", "app-2", "app-3"]


def nginx_label_and_conf(plan: Plan) -> tuple[str | None, str]:
    uploads = {upload["file"]: upload["content"] for upload in config_containers(plan)["nginx"]["uploads"]}
    return label(containers(plan)["nginx"], "config"), uploads["/etc/stories/nginx/nginx.conf"]


def test_a_new_nginx_conf_is_reloaded_and_a_new_start_script_replaces_nginx() -> None:
    label_before, conf_before = nginx_label_and_conf(plan_of("prod"))

    def stricter_limits(settings: dict[str, Any]) -> None:
        settings["proxy"]["rateLimits"] = {"apiPerSecond": 5}

    def slower_checks(settings: dict[str, Any]) -> None:
        settings["proxy"]["tls"]["reloadCheckSeconds"] = 120

    label_after, conf_after = nginx_label_and_conf(changed_plan("prod", stricter_limits))
    assert conf_after != conf_before and "rate=5r/s" in conf_after
    assert label_after == label_before, "nginx itself stays: its loop reloads the new file"
    label_later, _ = nginx_label_and_conf(changed_plan("prod", slower_checks))
    assert label_later != label_before, "start.sh runs only at start: a new one replaces nginx"


def test_nginx_retries_every_replica_of_two_generations() -> None:
    """During a roll the resolver's answer may still name the old replicas that just stopped: a request
    tries the next address, up to each replica of the old and the new generation."""
    for stack in ("dev", "prod"):
        conf = next(
            str(upload["content"])
            for upload in config_containers(plan_of(stack))["nginx"]["uploads"]
            if str(upload["file"]).endswith("/nginx.conf")
        )
        assert f"proxy_next_upstream_tries {2 * settings_for(stack).app.max_replicas};" in conf, stack
