"""The e2e applier against the real engine: the provider's behaviour, and the engine facts the plan rests on.

Inputs are written the way the plan records them (camelCase, numbers as floats, secrets revealed).
"""

from __future__ import annotations

import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from e2e.applier import (
    CONTAINER,
    NETWORK,
    REMOTE_IMAGE,
    VOLUME,
    MissingImageError,
    ProviderError,
    UnsupportedInputError,
    apply,
    check_inputs,
    destroy,
)
from tests.engine.conftest import Sandbox
from tools.plan import Plan, PlannedResource, computed_outputs

MiB = 1024 * 1024
SECOND = 1_000_000_000
LOG_OPTS = {"max-size": "10m", "max-file": "3"}


def _network(box: Sandbox, key: str) -> PlannedResource:
    inputs = {
        "name": box.name(key),
        "driver": "bridge",
        "internal": True,
        "attachable": False,
        "ipamConfigs": [{"subnet": box.subnet()}],
        "labels": [{"label": "org.1001stories.stack", "value": "e2etest"}],
    }
    return PlannedResource(NETWORK, key, None, inputs)


def _volume(box: Sandbox, key: str) -> PlannedResource:
    return PlannedResource(VOLUME, key, None, {"name": box.name(key)})


def _container(box: Sandbox, key: str, networks: list[tuple[PlannedResource, str]], **inputs: Any) -> PlannedResource:
    """A container as HardenedContainer plans it: the first network is the network mode."""
    names = [network.inputs["name"] for network, _ in networks]
    planned = {
        "name": box.name(key),
        "image": box.image,
        "hostname": key,
        "command": ["sleep", "3600"],
        "user": "65534:65534",
        "memory": 64.0,
        "memoryReservation": 16.0,
        "cpus": "0.5",
        "restart": "unless-stopped",
        "start": True,
        "mustRun": True,
        "readOnly": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},
        "securityOpts": ["no-new-privileges:true"],
        "capabilities": {"drops": ["ALL"]},
        "logDriver": "json-file",
        "logOpts": LOG_OPTS,
        "networkMode": names[0],
        "networksAdvanced": [
            {"name": name, "aliases": [alias]} for name, (_, alias) in zip(names, networks, strict=True)
        ],
        "labels": [{"label": "org.1001stories.service", "value": key}],
        **inputs,
    }
    return PlannedResource(CONTAINER, key, None, planned)


def _inspect(engine: docker.DockerClient, resource: PlannedResource) -> dict[str, Any]:
    info: dict[str, Any] = engine.api.inspect_container(resource.inputs["name"])
    return info


def _resolves(engine: docker.DockerClient, peer: PlannedResource, name: str) -> bool:
    """Whether `name` resolves in Docker's embedded DNS as seen from `peer` (internal networks only, so
    an unknown name goes nowhere outside)."""
    command = ["timeout", "3", "nslookup", name, "127.0.0.11"]
    exec_id = engine.api.exec_create(peer.inputs["name"], command)["Id"]
    engine.api.exec_start(exec_id)
    return bool(engine.api.exec_inspect(exec_id)["ExitCode"] == 0)


def _instant(text: str) -> datetime:
    """A Docker timestamp (RFC 3339 with up to nine decimals, trailing zeros dropped) as a datetime."""
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=UTC) + timedelta(microseconds=int((fraction + "0" * 6)[:6]))


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _exists(engine: docker.DockerClient, resource: PlannedResource) -> bool:
    api, name = engine.api, resource.inputs["name"]
    try:
        if resource.type == CONTAINER:
            api.inspect_container(name)
        elif resource.type == NETWORK:
            api.inspect_network(name)
        else:
            api.inspect_volume(name)
    except NotFound:
        return False
    return True


def test_every_stack_plan_uses_only_inputs_the_applier_maps(stack_plan: Plan) -> None:
    check_inputs(stack_plan.resources)


@pytest.mark.engine
def test_uploads_fail_on_a_read_only_root_even_into_a_volume_and_land_in_it_otherwise(
    engine: docker.DockerClient, sandbox: Sandbox
) -> None:
    network, config = _network(sandbox, "net"), _volume(sandbox, "config")
    key = secrets.token_hex(16)
    uploads = [
        {"file": "/etc/stories/app.conf", "content": "listen 8080\n", "permissions": "0444"},
        {"file": "/etc/stories/app.key", "content": key, "permissions": "0400", "owner": "70"},
    ]
    mounts = [{"volumeName": config.inputs["name"], "containerPath": "/etc/stories", "readOnly": False}]
    read_only = _container(sandbox, "ro", [(network, "ro")], uploads=uploads, volumes=mounts)

    with pytest.raises(ProviderError) as refused:
        apply(engine, [network, config, read_only])
    assert "Unable to upload volume content" in str(refused.value)
    assert "read-only" in refused.value.docker_message
    assert _inspect(engine, read_only)["State"]["Status"] == "created"  # left behind, as by the provider

    writable = _container(sandbox, "rw", [(network, "rw")], uploads=uploads, volumes=mounts, readOnly=False)
    apply(engine, [writable])
    check = engine.containers.run(
        sandbox.image,
        ["sh", "-c", "stat -c '%n %a %u:%g' /v/app.conf /v/app.key && cat /v/app.key"],
        name=sandbox.name("check"),
        volumes={config.inputs["name"]: {"bind": "/v", "mode": "ro"}},
        network_mode="none",
        detach=True,
    )
    assert check.wait(timeout=30)["StatusCode"] == 0
    assert check.logs().decode().splitlines() == ["/v/app.conf 444 0:0", "/v/app.key 400 70:0", key]


@pytest.mark.engine
def test_a_container_with_the_plans_fields_reaches_docker_as_the_provider_sets_them(
    engine: docker.DockerClient, sandbox: Sandbox
) -> None:
    front, back = _network(sandbox, "front"), _network(sandbox, "back")
    data, static = _volume(sandbox, "data"), _volume(sandbox, "static")
    image = PlannedResource(REMOTE_IMAGE, "probe", None, {"name": sandbox.image, "keepLocally": True})
    port = _free_loopback_port()
    web = _container(
        sandbox,
        "web",
        [(front, "web"), (back, "web-back")],
        image=computed_outputs(REMOTE_IMAGE, "probe")["imageId"],
        entrypoints=["/bin/busybox"],
        command=["httpd", "-f", "-p", "8080", "-h", "/srv"],
        envs=["STORIES_MODE=e2e"],
        ports=[{"internal": 8080.0, "external": float(port), "ip": "127.0.0.1"}],
        volumes=[
            {"volumeName": data.inputs["name"], "containerPath": "/srv", "readOnly": False},
            {"volumeName": static.inputs["name"], "containerPath": "/etc/stories-static", "readOnly": True},
        ],
        healthcheck={
            "tests": ["CMD", "stat", "/srv"],
            "interval": "1s",
            "timeout": "2s",
            "startPeriod": "1s",
            "retries": 3.0,
        },
        stopSignal="SIGINT",
        stopTimeout=5.0,
        wait=True,
        waitTimeout=30.0,
    )

    applied = apply(engine, [front, back, data, static, image, web])

    probe_id = engine.images.get(sandbox.image).id
    assert applied.images == {sandbox.image: probe_id}
    assert applied.containers == [web.inputs["name"]] and applied.stopped == []
    info = _inspect(engine, web)
    config, host = info["Config"], info["HostConfig"]
    assert info["Image"] == config["Image"] == probe_id  # the plan's image id, resolved to the local image
    assert config["Hostname"] == "web"
    assert config["User"] == "65534:65534"
    assert "STORIES_MODE=e2e" in config["Env"]
    assert config["Entrypoint"] == ["/bin/busybox"]
    assert config["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/srv"]
    assert config["Labels"] == {"org.1001stories.service": "web"}
    assert config["Healthcheck"] == {
        "Test": ["CMD", "stat", "/srv"],
        "Interval": SECOND,
        "Timeout": 2 * SECOND,
        "StartPeriod": SECOND,
        "Retries": 3,
    }
    assert (config["StopSignal"], config["StopTimeout"]) == ("SIGINT", 5)
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert set(config["Volumes"]) == {"/srv", "/etc/stories-static"}
    assert host["Binds"] == [
        f"{data.inputs['name']}:/srv:rw",
        f"{static.inputs['name']}:/etc/stories-static:ro",
    ]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=16m"}
    assert (host["CapDrop"], host["CapAdd"]) == (["ALL"], None)
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert (host["Memory"], host["MemoryReservation"], host["NanoCpus"]) == (64 * MiB, 16 * MiB, SECOND // 2)
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host["LogConfig"] == {"Type": "json-file", "Config": LOG_OPTS}
    assert host["NetworkMode"] == front.inputs["name"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert host["Init"] is False
    networks = info["NetworkSettings"]["Networks"]
    assert set(networks) == {front.inputs["name"], back.inputs["name"]}
    assert "web-back" in networks[back.inputs["name"]]["Aliases"]
    assert info["State"]["Running"] is True
    assert info["State"]["Health"]["Status"] == "healthy"  # `wait` returned only once it was
    # Engine fact: a port published by a container on internal networks only is bound nowhere.
    assert info["NetworkSettings"]["Ports"] == {}


@pytest.mark.engine
@pytest.mark.parametrize("network_mode", ["first network", "bridge"])
def test_aliases_on_the_network_mode_network_never_reach_docker(
    engine: docker.DockerClient, sandbox: Sandbox, network_mode: str
) -> None:
    """The provider creates the container on `network_mode`, then connects every `networks_advanced`
    entry: Docker keeps no aliases for the network the container is already on. With network_mode
    "bridge" (the provider's default), the provider disconnects bridge and every alias reaches Docker."""
    first, second = _network(sandbox, "first"), _network(sandbox, "second")
    mode = {"networkMode": "bridge"} if network_mode == "bridge" else {}
    service = _container(sandbox, "service", [(first, "alias-first"), (second, "alias-second")], **mode)
    peer = _container(sandbox, "peer", [(first, "peer-first"), (second, "peer-second")])

    apply(engine, [first, second, service, peer])

    networks = _inspect(engine, service)["NetworkSettings"]["Networks"]
    assert set(networks) == {first.inputs["name"], second.inputs["name"]}
    assert "alias-second" in networks[second.inputs["name"]]["Aliases"]
    assert _resolves(engine, peer, "alias-second")
    assert _resolves(engine, peer, service.inputs["name"])
    kept = network_mode == "bridge"
    assert ("alias-first" in (networks[first.inputs["name"]]["Aliases"] or [])) is kept
    assert _resolves(engine, peer, "alias-first") is kept


@pytest.mark.engine
def test_a_container_created_stopped_has_no_dns_name(engine: docker.DockerClient, sandbox: Sandbox) -> None:
    network = _network(sandbox, "net")
    replica = _container(sandbox, "replica", [(network, "replica")], start=False, mustRun=False)
    peer = _container(sandbox, "peer", [(network, "peer")])

    applied = apply(engine, [network, replica, peer])

    state = _inspect(engine, replica)["State"]
    assert (state["Status"], state["Running"]) == ("created", False)
    assert applied.stopped == []  # mustRun false: the provider leaves it alone
    assert not _resolves(engine, peer, replica.inputs["name"])
    engine.api.start(replica.inputs["name"])
    assert _resolves(engine, peer, replica.inputs["name"])  # the probe works once it runs


@pytest.mark.engine
@pytest.mark.parametrize("fails_half_way", [False, True])
def test_destroy_removes_everything_the_plan_names(
    engine: docker.DockerClient, sandbox: Sandbox, fails_half_way: bool
) -> None:
    network, config = _network(sandbox, "net"), _volume(sandbox, "config")
    mounts = [{"volumeName": config.inputs["name"], "containerPath": "/etc/stories", "readOnly": False}]
    running = _container(sandbox, "running", [(network, "running")], volumes=mounts)
    uploads = [{"file": "/etc/stories/app.conf", "content": "listen 8080\n", "permissions": "0444"}]
    last = _container(sandbox, "last", [(network, "last")], volumes=mounts, uploads=uploads, readOnly=fails_half_way)
    plan = [network, config, running, last]
    if fails_half_way:
        with pytest.raises(ProviderError):
            apply(engine, plan)
    else:
        apply(engine, plan)
    assert all(_exists(engine, resource) for resource in plan)

    destroy(engine, plan)
    assert not any(_exists(engine, resource) for resource in plan)
    destroy(engine, plan)  # nothing left to remove is fine


@pytest.mark.engine
def test_nothing_is_created_for_an_unmapped_input_or_a_missing_image(
    engine: docker.DockerClient, sandbox: Sandbox
) -> None:
    network = _network(sandbox, "net")
    unmapped = _container(sandbox, "unmapped", [(network, "unmapped")], domainname="stories.test")
    with pytest.raises(UnsupportedInputError, match="domainname"):
        apply(engine, [network, unmapped])
    missing = PlannedResource(REMOTE_IMAGE, "missing", None, {"name": sandbox.name("missing:1")})
    with pytest.raises(MissingImageError, match=sandbox.name("missing:1")):
        apply(engine, [network, missing])
    assert not _exists(engine, network)


@pytest.mark.engine
@pytest.mark.parametrize("exit_code", [0, 3])
def test_an_attached_container_is_waited_for_and_its_exit_is_recorded_never_checked(
    engine: docker.DockerClient, sandbox: Sandbox, exit_code: int
) -> None:
    """attach: the provider waits until the container no longer runs; logs: its output becomes
    container_logs; the read records exit_code; a non-zero exit is NOT an error of the provider (the
    program decides, on_exit here). mustRun false and restart "no": it is neither started again nor
    reported as stopped. A container after it in the plan is created only after it exited."""
    network = _network(sandbox, "net")
    script = f"echo to-stdout; sleep 2; echo to-stderr >&2; exit {exit_code}"
    one_shot = _container(
        sandbox,
        "one-shot",
        [(network, "one-shot")],
        command=["sh", "-c", script],
        restart="no",
        mustRun=False,
        attach=True,
        logs=True,
    )
    after = _container(sandbox, "after", [(network, "after")])
    seen: list[tuple[str, int, str]] = []

    applied = apply(engine, [network, one_shot, after], on_exit=lambda *args: seen.append(args))

    name = one_shot.inputs["name"]
    assert applied.exit_codes == {name: exit_code} and applied.stopped == []
    assert "to-stdout" in applied.logs[name] and "to-stderr" in applied.logs[name]
    assert seen == [(name, exit_code, applied.logs[name])]
    state = _inspect(engine, one_shot)["State"]
    assert (state["Status"], state["ExitCode"], state["Restarting"]) == ("exited", exit_code, False)
    started_after = _instant(_inspect(engine, after)["State"]["StartedAt"])
    assert started_after > _instant(state["FinishedAt"]), "created and started once the one-shot had exited"


@pytest.mark.engine
def test_a_program_that_stops_on_a_failed_one_shot_creates_nothing_after_it(
    engine: docker.DockerClient, sandbox: Sandbox
) -> None:
    """What e2e/stack.py does with `on_exit` (the program's gate): the apply stops at the failed one-shot,
    with its log, and the containers after it in the plan are never created."""
    from components.container import OneShotFailedError
    from e2e.stack import stop_on_failure

    network = _network(sandbox, "net")
    failing = _container(
        sandbox,
        "migration",
        [(network, "migration")],
        command=["sh", "-c", "echo relation already exists; exit 1"],
        restart="no",
        mustRun=False,
        attach=True,
        logs=True,
    )
    replica = _container(sandbox, "replica", [(network, "replica")])
    with pytest.raises(OneShotFailedError, match="relation already exists"):
        apply(engine, [network, failing, replica], on_exit=stop_on_failure)
    assert _exists(engine, failing) and not _exists(engine, replica)
