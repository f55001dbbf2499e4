"""The e2e stack: the plan of `Pulumi.e2e.yaml` created on this machine's Docker engine, with stand-ins
for the world outside the host (S3 and an ACME server), all of it removable again.

    python -m e2e.stack up     # build the images, create everything, wait until healthy
    python -m e2e.stack down   # remove everything `up` created, also after a failure

Nothing leaves this machine: images are built here (e2e.images) and never pulled; the stand-ins sit on
the stack's egress networks, which this stack makes internal (`networks.egressInternal`), and on the
edge network, where pebble reaches nginx for the HTTP-01 challenge. The secrets and certificates are
generated for real (e2e.mocks) and live only in the containers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from components.container import LABEL_PREFIX, one_shot_outcome
from e2e.applier import apply, destroy, update
from e2e.images import build_all
from e2e.mocks import RealMocks
from harness.servers import make_certificates
from model.loading import SETTINGS_KEY, ConfigError
from tools.plan import CONTAINER, PlannedResource, project_name, run_plan, run_program, settings_for, stack_config

STACK = "e2e"
ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".e2e"  # the stand-ins' PKI and pebble's config; removed by `down`
S3_STANDIN = f"{STACK}-outside-s3"
ACME_STANDIN = f"{STACK}-outside-acme"
MOTO_PORT = 5000  # inside the S3 stand-in, behind its TLS
PEBBLE_MANAGEMENT_PORT = 15000
HEALTHY_TIMEOUT_SECONDS = 300
DOCKER_SOCKET = Path("/var/run/docker.sock")
NETWORKS_AND_VOLUMES = {"docker:index/network:Network", "docker:index/volume:Volume"}


@dataclass(frozen=True)
class Outside:
    """Where the stand-ins for the outside world answer, from the e2e settings."""

    s3_host: str
    acme_host: str
    acme_port: int

    @staticmethod
    def of_settings() -> Outside:
        settings = settings_for(STACK)
        directory = urlparse(settings.proxy.tls.acme_directory_url)
        assert settings.backup.s3.endpoint and directory.hostname and directory.port
        return Outside(settings.backup.s3.endpoint, directory.hostname, directory.port)


def test_pki(work: Path, outside: Outside) -> dict[str, Path]:
    """A throwaway CA and one server certificate for both stand-ins (readable by their users)."""
    files = make_certificates(work / "pki", [outside.s3_host, outside.acme_host], "unused")
    for path in files.values():
        path.chmod(0o644)
    return files


SettingsChange = Callable[[dict[str, Any]], None]


def e2e_config(ca_pem: str, change: SettingsChange | None = None) -> tuple[dict[str, str], list[str]]:
    """The stack file's config, plus the stand-ins' CA for pgBackRest, restic and certbot, and the group
    that owns this machine's Docker socket (what an operator sets in host.dockerSocketGid); `change` edits
    the settings (as an operator edits the stack file) before they are used."""
    config, secret_keys = stack_config(STACK)
    key = f"{project_name()}:{SETTINGS_KEY}"
    settings = json.loads(config[key])
    settings["host"]["dockerSocketGid"] = DOCKER_SOCKET.stat().st_gid
    settings["backup"]["s3"]["caCertificatePem"] = ca_pem
    settings["proxy"]["tls"]["acmeCaCertificatePem"] = ca_pem
    if change is not None:
        change(settings)
    return {**config, key: json.dumps(settings)}, secret_keys


def planned(ca_pem: str, mocks: RealMocks, change: SettingsChange | None = None) -> list[PlannedResource]:
    """The stack's resources in registration order, secrets and certificates generated for real (the same
    ones as before for a second plan with the same mocks)."""
    config, secret_keys = e2e_config(ca_pem, change)
    resources, _ = run_program(STACK, mocks, config, secret_keys, revealed=True)
    return resources


_REPLICA = re.compile(r"^app-(\d+)$")


def container_name(client: docker.DockerClient, service: str) -> str:
    """The name of the stack's container of `service` ("postgres", "app-2", ...). A replica's name carries
    its generation (components/container.py), so replicas are found by their labels: the newest container
    of the number, when a deploy has created the new one and not yet removed the old one."""
    match = _REPLICA.match(service)
    if match is None:
        return f"{STACK}-{service}"
    labels = [f"{LABEL_PREFIX}.stack={STACK}", f"{LABEL_PREFIX}.service=app", f"{LABEL_PREFIX}.replica={match[1]}"]
    found = client.containers.list(all=True, filters={"label": labels})
    if not found:
        raise LookupError(f"no container of {service} in the {STACK} stack")
    return str(max(found, key=lambda container: str(container.attrs["Created"])).name)


def container_env(resources: Sequence[PlannedResource], name: str) -> dict[str, str]:
    inputs = next(r.inputs for r in resources if r.type == CONTAINER and r.inputs["name"] == name)
    return dict(str(entry).split("=", 1) for entry in inputs.get("envs") or [])


# ---------------------------------------------------------------------------------------------------
# The outside world


def _run_stand_in(
    client: docker.DockerClient,
    name: str,
    image: str,
    networks: Mapping[str, str],
    volumes: Mapping[str, dict[str, str]],
    **options: Any,
) -> Container:
    """A stand-in on the given networks, each with an alias (network -> alias)."""
    first, *others = networks.items()
    container = client.containers.create(
        image,
        name=name,
        network=first[0],
        networking_config={first[0]: client.api.create_endpoint_config(aliases=[first[1]])},
        volumes=dict(volumes),
        labels={"org.1001stories.stack": STACK, "org.1001stories.role": "outside-stand-in"},
        **options,
    )
    for network, alias in others:
        client.networks.get(network).connect(container, aliases=[alias])
    container.start()
    return container


def start_s3(
    client: docker.DockerClient, image: str, resources: Sequence[PlannedResource], pki: Mapping[str, Path]
) -> None:
    """moto behind TLS, reachable as the S3 endpoint from the egress networks of Postgres and the backups;
    the bucket the stack names is created in it."""
    outside = Outside.of_settings()
    _run_stand_in(
        client,
        S3_STANDIN,
        image,
        {f"{STACK}-egress-postgres": outside.s3_host, f"{STACK}-egress-backup": outside.s3_host},
        {
            str(pki["server.crt"]): {"bind": "/etc/s3/tls/server.crt", "mode": "ro"},
            str(pki["server.key"]): {"bind": "/etc/s3/tls/server.key", "mode": "ro"},
        },
        # Path-style requests to a named host: moto would take the host's first label for the bucket.
        environment={"S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"},
    )
    bucket = container_env(resources, f"{STACK}-postgres")["PGBACKREST_REPO1_S3_BUCKET"]
    url = f"http://127.0.0.1:{MOTO_PORT}/{bucket}"
    create = (
        "import urllib.request, time\n"
        "for attempt in range(60):\n"
        "    try:\n"
        f"        urllib.request.urlopen(urllib.request.Request({url!r}, method='PUT'))\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.5)\n"
        "else:\n"
        "    raise SystemExit('moto did not answer')\n"
    )
    _exec_ok(client.containers.get(S3_STANDIN), ["python3", "-c", create])


def start_acme(client: docker.DockerClient, image: str, work: Path, pki: Mapping[str, Path]) -> None:
    """pebble on the edge network: certbot reaches it by the directory URL's host, and it reaches nginx
    by the stack's domain (an alias of nginx there) through Docker's DNS for the HTTP-01 challenge."""
    outside = Outside.of_settings()
    config = {
        "pebble": {
            "listenAddress": f"0.0.0.0:{outside.acme_port}",
            "managementListenAddress": f"0.0.0.0:{PEBBLE_MANAGEMENT_PORT}",
            "certificate": "/etc/pebble/tls/server.crt",
            "privateKey": "/etc/pebble/tls/server.key",
            "httpPort": 8080,  # nginx's plain-HTTP listener inside its container (published as 80)
            "tlsPort": 8443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_file = work / "pebble-config.json"
    config_file.write_text(json.dumps(config, indent=2))
    config_file.chmod(0o644)
    _run_stand_in(
        client,
        ACME_STANDIN,
        image,
        {f"{STACK}-edge": outside.acme_host},
        {
            str(config_file): {"bind": "/etc/pebble/pebble-config.json", "mode": "ro"},
            str(pki["server.crt"]): {"bind": "/etc/pebble/tls/server.crt", "mode": "ro"},
            str(pki["server.key"]): {"bind": "/etc/pebble/tls/server.key", "mode": "ro"},
        },
        command=["-config", "/etc/pebble/pebble-config.json", "-dnsserver", "127.0.0.11:53"],
        # Deterministic: no random waits before validating, no random nonce rejections.
        environment={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
    )


def _exec_ok(container: Container, command: list[str]) -> str:
    result = container.exec_run(command)
    output = result.output.decode(errors="replace") if isinstance(result.output, bytes) else ""
    if result.exit_code != 0:
        raise RuntimeError(f"{container.name}: {' '.join(command[:2])} failed ({result.exit_code}):\n{output}")
    return output


# ---------------------------------------------------------------------------------------------------
# Up and down


def services(resources: Sequence[PlannedResource]) -> list[Mapping[str, Any]]:
    """The containers that keep running (config containers, replicas created stopped and one-shots apart)."""
    return [
        r.inputs
        for r in resources
        if r.type == CONTAINER and r.inputs.get("start", True) is not False and not r.inputs.get("attach")
    ]


def one_shots(resources: Sequence[PlannedResource]) -> list[Mapping[str, Any]]:
    """The containers `pulumi up` runs to their exit (attach): the app's migration and volume owner."""
    return [r.inputs for r in resources if r.type == CONTAINER and r.inputs.get("attach")]


def stop_on_failure(name: str, exit_code: int, logs: str) -> None:
    """What the program does with a one-shot's exit code: stop before what depends on it."""
    one_shot_outcome(f"the one-shot {name}", name, exit_code, logs)


def unhealthy(client: docker.DockerClient, names: Sequence[str]) -> dict[str, str]:
    """Container -> what is wrong, for each that is not running or not (yet) healthy."""
    problems = {}
    for name in names:
        try:
            state = client.api.inspect_container(name)["State"]
        except NotFound:
            problems[name] = "missing"
            continue
        health = (state.get("Health") or {}).get("Status")
        if state["Status"] != "running":
            problems[name] = f"{state['Status']} (exit {state.get('ExitCode')})"
        elif health not in (None, "healthy"):
            problems[name] = str(health)
    return problems


def wait_until_healthy(client: docker.DockerClient, names: Sequence[str], timeout_seconds: float) -> float:
    """Seconds until every container runs and passes its healthcheck; raises with the laggards' state."""
    start = time.monotonic()
    while problems := unhealthy(client, names):
        if time.monotonic() - start > timeout_seconds:
            details = "\n".join(
                f"  {name}: {problem}{_last_health(client, name)}" for name, problem in problems.items()
            )
            raise TimeoutError(f"not healthy after {timeout_seconds:.0f} s:\n{details}")
        time.sleep(1)
    return time.monotonic() - start


def _last_health(client: docker.DockerClient, name: str) -> str:
    try:
        log = (client.api.inspect_container(name)["State"].get("Health") or {}).get("Log") or []
    except NotFound:
        return ""
    return f"; last check: {log[-1].get('Output', '').strip()[:300]!r}" if log else ""


@dataclass(frozen=True)
class Running:
    resources: list[PlannedResource]
    apply_seconds: float
    healthy_seconds: float
    pki: dict[str, Path]
    mocks: RealMocks  # the stack's "state": what its generated secrets and certificates are


def redeploy(
    client: docker.DockerClient, running: Running, change: SettingsChange, log: Callable[[str], None] = print
) -> Running:
    """`pulumi up` after an edit of the settings: the new plan applied over the running stack in the Pulumi
    engine's order (e2e.applier.update); the stack as it is afterwards, with the update's duration."""
    resources = planned(running.pki["ca.crt"].read_text(), running.mocks, change)
    started = time.monotonic()
    update(client, running.resources, resources, log, on_exit=stop_on_failure)
    return replace(running, resources=resources, apply_seconds=time.monotonic() - started)


def up(client: docker.DockerClient, log: Callable[[str], None] = print) -> Running:
    """Build what is missing, create the stand-ins and the stack, and wait until every service is healthy.
    Whatever a previous run left behind is removed first."""
    down(client, log)
    images = build_all(client, STACK)
    WORK.mkdir(exist_ok=True)
    outside = Outside.of_settings()
    pki = test_pki(WORK, outside)
    mocks = RealMocks()
    resources = planned(pki["ca.crt"].read_text(), mocks)
    started = time.monotonic()
    # The networks first, so that the stand-ins are there when the services first reach out.
    apply(client, [r for r in resources if r.type in NETWORKS_AND_VOLUMES], log)
    start_s3(client, images["s3"], resources, pki)
    start_acme(client, images["pebble"], WORK, pki)
    apply(client, [r for r in resources if r.type not in NETWORKS_AND_VOLUMES], log, on_exit=stop_on_failure)
    applied = time.monotonic()
    wait_until_healthy(client, [str(inputs["name"]) for inputs in services(resources)], HEALTHY_TIMEOUT_SECONDS)
    healthy = time.monotonic()
    return Running(resources, applied - started, healthy - started, pki, mocks)


def down(client: docker.DockerClient, log: Callable[[str], None] = print) -> None:
    """Remove the stack and the stand-ins: first every container labelled with the stack (an app replica is
    named after its inputs, some of them ids of the running stack that a new plan cannot know), then what
    the plan names (networks, volumes), then whatever is left."""
    for name in (S3_STANDIN, ACME_STANDIN):
        try:
            client.api.remove_container(name, force=True, v=True)
            log(f"{name}: removed")
        except NotFound:
            pass
        except APIError as error:
            log(f"{name}: {error.explanation}")
    _remove_containers(client, log)
    try:
        destroy(client, run_plan(STACK).resources, log)
    except ConfigError as error:  # a stack file being edited: remove what the stack's names and labels say
        log(f"{STACK}: the plan cannot be made ({error}); removing by name and label instead")
    _sweep(client, log)
    shutil.rmtree(WORK, ignore_errors=True)


def _remove_containers(client: docker.DockerClient, log: Callable[[str], None]) -> None:
    for container in client.containers.list(all=True, filters={"label": f"org.1001stories.stack={STACK}"}):
        container.remove(force=True, v=True)
        log(f"{container.name}: removed")


def _sweep(client: docker.DockerClient, log: Callable[[str], None]) -> None:
    """Whatever of the stack is left: containers and networks labelled with it, volumes named after it."""
    _remove_containers(client, log)
    for network in client.networks.list(filters={"label": f"org.1001stories.stack={STACK}"}):
        network.remove()
        log(f"{network.name}: removed")
    for volume in client.volumes.list():
        if volume.name.startswith(f"{STACK}-"):
            volume.remove(force=True)
            log(f"{volume.name}: removed")


def stack_logs(client: docker.DockerClient, lines: int = 40) -> str:
    """The last lines of every container of the stack and of the stand-ins (for a failed check)."""
    parts = []
    for container in client.containers.list(all=True, filters={"label": f"org.1001stories.stack={STACK}"}):
        tail = container.logs(tail=lines).decode(errors="replace")
        parts.append(f"----- {container.name} ({container.status})\n{tail}")
    return "\n".join(parts) or "(no containers)"


def _published(resources: Sequence[PlannedResource]) -> list[str]:
    return [
        f"  {inputs['name']}: {port.get('ip', '0.0.0.0')}:{int(port['external'])} -> {int(port['internal'])}"
        for inputs in services(resources)
        for port in inputs.get("ports") or []
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=300)
    if args.command == "down":
        down(client)
        return 0
    try:
        running = up(client)
    except Exception:
        print("e2e stack: up failed; `make e2e-down` removes what was created", file=sys.stderr)
        raise
    seconds = f"applied in {running.apply_seconds:.1f} s, healthy after {running.healthy_seconds:.1f} s"
    print(f"\nThe e2e stack is up: {seconds}")
    print("\n".join(["Published on this machine:", *_published(running.resources)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
