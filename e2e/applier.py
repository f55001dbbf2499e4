"""Create the plan's Docker resources on a real engine the way pulumi-docker would, without Pulumi.

pulumi-docker 5.2.0 bridges kreuzwerker/terraform-provider-docker. The behaviour below was read in that
provider at v4.5.0 (commit 5074970c, the `upstream` submodule of pulumi-docker v5.1.0 and of its master
of 2026-08-14); file and function are in internal/provider/. The Docker client calls behave as the Go
client (github.com/docker/docker v28.5.2, the provider's go.mod) sends them to an API 1.41 engine.

Container, resource_docker_container_funcs.go `resourceDockerContainerCreate`, in this order:
  1. image: `findImage` inspects the reference locally and pulls when it is missing. Here nothing is
     ever pulled: a missing image is `MissingImageError`. `Config.Image` is the reference as given.
  2. `ContainerCreate` with an EMPTY networking config: only `HostConfig.NetworkMode` (`network_mode`,
     default "bridge") attaches the container at creation. Config: Hostname, User, Env, Cmd (no empty
     value: "values for command may not be empty"), Entrypoint, Labels, StopSignal, StopTimeout,
     ExposedPorts "<internal>/<protocol>", Volumes {container_path}, Healthcheck (Go durations, set
     only when a healthcheck is given). HostConfig: Binds "<volume_name|host_path>:<path>:rw|ro",
     PortBindings {HostIp (default 0.0.0.0), HostPort}, Tmpfs, CapAdd/CapDrop, SecurityOpt, Memory and
     MemoryReservation (MB * 1024 * 1024), NanoCPUs (`opts.ParseCPUs(cpus)`), RestartPolicy (default
     "no"), ReadonlyRootfs, LogConfig {Type: log_driver, Config: log_opts}, Init=false (always sent).
  3. `networks_advanced` (when set): `NetworkDisconnect("bridge")`, ignoring "is not connected to the
     network bridge", then `NetworkConnect` of EVERY listed network with its aliases and IPv4/IPv6
     address, the `network_mode` network included. Docker 20.10 answers that one with success and
     keeps no aliases (moby daemon/container_operations.go `updateNetworkSettings`: "Avoid duplicate
     config"), so aliases on the `network_mode` network never reach the engine.
  4. `upload`: ONE tar archive PER upload, each holding one regular-file header {Name: file, Mode,
     Size, ModTime: now}, Mode = permissions (octal, `^0[0-7]{3}$`) else 0744 if executable else
     0644, uid/gid 0; `CopyToContainer(id, "/", archive, CopyToContainerOptions{})`, i.e. PUT
     /containers/{id}/archive?path=/&noOverwriteDirNonDir=true, no copyUIDGID (so the engine keeps the
     header's uid/gid). Extraction at "/" into a read-only root fails ("container rootfs is marked
     read-only") even when the file lands in a volume. Exactly one of content/content_base64/source
     must be non-empty.
  5. `start` (default true): `ContainerStart`. `wait` (default false): poll `ContainerInspect` every
     second until State.Health.Status is "healthy"; no healthcheck is an error, `wait_timeout`
     (default 60 s) ends it with "container failed to be in healthy state". Then `attach` (default
     false, after the start whether or not it started): `ContainerWait(WaitConditionNotRunning)` until
     the container no longer runs (an error of the wait is "Unable to wait container end of
     execution"); with `logs` (default false) its stdout and stderr, followed from the start, become
     `container_logs`. The exit code is NOT checked: the read below records it as `exit_code` and the
     create succeeds whatever it is (hashicorp/terraform-provider-docker#106, which added attach: "you
     can catch the container exit code with the exit_code attribute if you disable the must_run
     option"). `Applied.exit_codes` and `Applied.logs` hold what the provider's state would; a program
     that must stop on a failure does so itself (`on_exit`, as components/container.py `after_success`).
  Uploads and networks_advanced are Terraform sets, iterated in hash order; the applier keeps the plan's.
  6. `resourceDockerContainerRead`: a container that is not running gets its `exit_code` in state; one
     that is not running while `must_run` (default true) gets `must_run=false` in state, to be started by
     the next update. No error (since #841, v4.0.0): `Applied.stopped` records it.
Network, resource_docker_network_funcs.go `resourceDockerNetworkCreate`: labels, driver, options,
  internal, attachable; IPAM always {Driver: "default" (schema default of ipam_driver), Config:
  ipam_config}; CheckDuplicate=true (the Go client sets it for API < 1.44).
Volume, resource_docker_volume.go `resourceDockerVolumeCreate`: name, labels, driver, driver_opts.
Delete, `resourceDockerContainerDelete`: unless `attach`, `ContainerStop` with `destroy_grace_seconds` as
  its timeout (0 when unset: SIGKILL at once), then `ContainerRemove(force, RemoveVolumes: remove_volumes
  default true)`; networks and volumes (force) retried for 30 s while "has active endpoints" / "volume is in
  use". (`destroy`, which tears a whole test stack down, skips the stop.)

An update (`update`) follows the Pulumi engine, not the provider: resources in the plan's registration order
(which respects dependencies); an unchanged one is kept; a changed one is replaced, creating the new one
first and deleting the old one after every other step, unless the resource says `deleteBeforeReplace`,
which deletes it first; what the new plan no longer has is deleted last. Nearly every input of a container
forces its replacement in the provider, so any change is a replacement here.

pulumi-docker 5.2.0's schema adds `owner` and `group` to uploads ("Names are resolved using the
Terraform host's user database; numeric IDs can be used directly"), from an upstream newer than any
source readable here: they become the tar header's Uid/Gid (0 when unset), names looked up on this host.
"""

from __future__ import annotations

import base64
import binascii
import grp
import io
import pwd
import re
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any

import docker
import requests
from docker.errors import APIError, NotFound
from docker.types import HostConfig, IPAMConfig, IPAMPool, LogConfig

from tools.plan import SECRET, PlannedResource, computed_outputs

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
# Every container depends on its image, networks and volumes; the plan lists resources sorted by name.
_ORDER = (REMOTE_IMAGE, IMAGE, NETWORK, VOLUME, CONTAINER)

# The input keys the applier maps, per type; nested objects (and lists of them) by key.
_KEYS = {
    NETWORK: {"name", "driver", "internal", "attachable", "labels", "options", "ipamConfigs"},
    VOLUME: {"name", "driver", "driverOpts", "labels"},
    CONTAINER: {
        "name",
        "image",
        "hostname",
        "command",
        "entrypoints",
        "envs",
        "user",
        "labels",
        "healthcheck",
        "stopSignal",
        "stopTimeout",
        "ports",
        "volumes",
        "tmpfs",
        "capabilities",
        "securityOpts",
        "memory",
        "memoryReservation",
        "cpus",
        "restart",
        "maxRetryCount",
        "readOnly",
        "logDriver",
        "logOpts",
        "networkMode",
        "networksAdvanced",
        "uploads",
        "start",
        "mustRun",
        "wait",
        "waitTimeout",
        "attach",
        "logs",
        "destroyGraceSeconds",
    },
}
_NESTED_KEYS = {
    "ipamConfigs": {"subnet", "ipRange", "gateway", "auxAddress"},
    "healthcheck": {"tests", "interval", "timeout", "startPeriod", "retries"},
    "ports": {"internal", "external", "ip", "protocol"},
    "volumes": {"containerPath", "volumeName", "hostPath", "readOnly", "fromContainer"},
    "capabilities": {"adds", "drops"},
    "networksAdvanced": {"name", "aliases", "ipv4Address", "ipv6Address"},
    "uploads": {"file", "content", "contentBase64", "permissions", "executable", "owner", "group"},
    "labels": {"label", "value"},
}

_RESTART = re.compile(r"^(no|on-failure|always|unless-stopped)$")
_PERMISSIONS = re.compile(r"^0[0-7]{3}$")
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
_NANOSECONDS["h"] = 60 * _NANOSECONDS["m"]
_REMOVAL_TIMEOUT_S = 30.0
_CREATE_TIMEOUT_S = 20 * 60  # dockerContainerCreateDefaultTimeout


class ApplyError(Exception):
    """Something in the plan could not be applied; `resource` names it as `type name`."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(f"{resource}: {message}")
        self.resource = resource


class ProviderError(ApplyError):
    """Where the provider fails: its message, then Docker's own (`docker_message`, "" if not Docker's)."""

    def __init__(self, resource: str, message: str, docker_message: str = "") -> None:
        super().__init__(resource, f"{message}: {docker_message}" if docker_message else message)
        self.docker_message = docker_message


class UnsupportedInputError(ApplyError):
    """An input this applier does not map, or a secret that the plan redacted."""


class MissingImageError(ApplyError):
    """The image is not on the engine; the applier never pulls or builds."""


@dataclass
class Applied:
    """What `apply` created, by name, in order."""

    images: dict[str, str] = field(default_factory=dict)  # reference in the plan -> local image id
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # not running although must_run (provider: no error)
    exit_codes: dict[str, int] = field(default_factory=dict)  # attached containers: the state's exit_code
    logs: dict[str, str] = field(default_factory=dict)  # attached containers with logs: container_logs
    stand_ins: dict[str, str] = field(default_factory=dict)  # the plan's computed RemoteImage.imageId -> local id


# What the program does with an attached container's outputs (name, exit_code, container_logs): the
# provider itself never fails on them. It may raise to stop the apply, as `pulumi up` stops there.
OnExit = Callable[[str, int, str], None]


def apply(
    client: docker.DockerClient,
    resources: Sequence[PlannedResource],
    log: Callable[[str], None] = print,
    on_exit: OnExit | None = None,
) -> Applied:
    """Create the plan's images (checked, never pulled), networks, volumes and containers, in that order.
    `on_exit` sees each attached container's exit code and log as soon as it has exited."""
    check_inputs(resources)
    applied = Applied()
    for resource in _ordered(resources):
        _create(client, resource, applied, log, on_exit)
    return applied


def update(
    client: docker.DockerClient,
    before: Sequence[PlannedResource],
    after: Sequence[PlannedResource],
    log: Callable[[str], None] = print,
    on_exit: OnExit | None = None,
) -> Applied:
    """Take a stack created from the plan `before` to the plan `after`, in the Pulumi engine's order (the
    module's docstring). What `after` creates is in the result; kept resources are not."""
    check_inputs(after)
    applied = Applied()
    previous = {(r.type, r.name): r for r in before if r.type in _ORDER}
    replaced: list[PlannedResource] = []
    for resource in _ordered(after):
        old = previous.pop((resource.type, resource.name), None)
        if resource.type in (REMOTE_IMAGE, IMAGE) or old is None or old.inputs != resource.inputs:
            if old is not None and resource.type not in (REMOTE_IMAGE, IMAGE):
                if resource.delete_before_replace:
                    _delete(client, old, log)
                else:
                    replaced.append(old)
            _create(client, resource, applied, log, on_exit)
    for old in [*reversed(replaced), *reversed(list(previous.values()))]:
        _delete(client, old, log)
    return applied


def _ordered(resources: Sequence[PlannedResource]) -> list[PlannedResource]:
    """Images, networks, volumes, containers; each kind in the plan's registration order."""
    return sorted((r for r in resources if r.type in _ORDER), key=lambda r: _ORDER.index(r.type))


def _create(
    client: docker.DockerClient,
    resource: PlannedResource,
    applied: Applied,
    log: Callable[[str], None],
    on_exit: OnExit | None,
) -> None:
    label = _label(resource)
    if resource.type in (REMOTE_IMAGE, IMAGE):
        reference = str(resource.inputs["name" if resource.type == REMOTE_IMAGE else "imageName"])
        image_id = _local_image(client, label, reference)
        applied.images[reference] = image_id
        if resource.type == REMOTE_IMAGE:
            applied.stand_ins[computed_outputs(resource.type, resource.name)["imageId"]] = image_id
    elif resource.type == NETWORK:
        applied.networks.append(_create_network(client, resource))
    elif resource.type == VOLUME:
        applied.volumes.append(_create_volume(client, resource))
    else:
        image = _container_image(client, label, str(resource.inputs.get("image", "")), applied.stand_ins)
        name, running = _create_container(client, resource, image, log, applied)
        applied.containers.append(name)
        if not running and resource.inputs.get("mustRun", True):
            applied.stopped.append(name)
            log(f"{label}: not running although mustRun; the provider would start it on the next update")
        if name in applied.exit_codes:
            log(f"{label}: exited with code {applied.exit_codes[name]}")
            if on_exit is not None:
                on_exit(name, applied.exit_codes[name], applied.logs.get(name, ""))
    log(f"{label}: done")


def _delete(client: docker.DockerClient, resource: PlannedResource, log: Callable[[str], None]) -> None:
    """As the provider deletes: a container is stopped with its `destroyGraceSeconds` first (unless attached)."""
    if resource.type == CONTAINER and not resource.inputs.get("attach", False):
        grace = _int(_label(resource), "destroyGraceSeconds", resource.inputs.get("destroyGraceSeconds", 0))
        try:
            client.api.stop(resource.inputs["name"], timeout=grace)
        except NotFound:
            return
    _remove_resource(client, resource, log)


def _remove_resource(client: docker.DockerClient, resource: PlannedResource, log: Callable[[str], None]) -> None:
    api = client.api
    removals: dict[str, tuple[Callable[..., None], str]] = {
        CONTAINER: (partial(api.remove_container, v=True, force=True), "is already in progress"),
        NETWORK: (api.remove_network, "has active endpoints"),
        VOLUME: (partial(api.remove_volume, force=True), "volume is in use"),
    }
    if resource.type in removals:
        remove, busy = removals[resource.type]
        if _remove(_label(resource), partial(remove, resource.inputs["name"]), busy):
            log(f"{_label(resource)}: removed")


def destroy(
    client: docker.DockerClient, resources: Sequence[PlannedResource], log: Callable[[str], None] = print
) -> None:
    """Remove every container, network and volume the plan names, whoever created them; missing ones are
    fine. Containers first (forced, without the provider's stop: a test stack goes at once), then networks,
    then volumes."""
    for type_ in (CONTAINER, NETWORK, VOLUME):
        for resource in resources:
            if resource.type == type_:
                _remove_resource(client, resource, log)


# ---------------------------------------------------------------------------------------------------
# Resources


def _label(resource: PlannedResource) -> str:
    return f"{resource.type.rsplit(':', 1)[-1]} {resource.name}"


def _explanation(error: APIError) -> str:
    return error.explanation or str(error)


def _local_image(client: docker.DockerClient, label: str, reference: str) -> str:
    try:
        return str(client.images.get(reference).id)
    except NotFound:
        message = f"image {reference!r} is not on this engine (the applier never pulls or builds)"
        raise MissingImageError(label, message) from None


def _container_image(client: docker.DockerClient, label: str, reference: str, stand_ins: Mapping[str, str]) -> str:
    """A RemoteImage's computed imageId in the plan stands for that image's local id; any other reference
    must be on the engine as given, and `Config.Image` is the reference itself."""
    if reference in stand_ins:
        return stand_ins[reference]
    if not reference:
        raise ProviderError(label, "Unable to create container: empty image name is not allowed")
    _local_image(client, label, reference)
    return reference


def _create_network(client: docker.DockerClient, resource: PlannedResource) -> str:
    inputs = resource.inputs
    label = _label(resource)
    pools = [
        IPAMPool(
            subnet=config.get("subnet"),
            iprange=config.get("ipRange"),
            gateway=config.get("gateway"),
            aux_addresses=config.get("auxAddress"),
        )
        for config in inputs.get("ipamConfigs", [])
    ]
    name = str(inputs["name"])
    try:
        client.api.create_network(
            name,
            driver=inputs.get("driver") or None,
            options=inputs.get("options") or None,
            ipam=IPAMConfig(driver="default", pool_configs=pools),
            check_duplicate=True,
            internal=bool(inputs.get("internal", False)),
            labels=_labels(inputs) or None,
            attachable=bool(inputs.get("attachable", False)),
        )
    except APIError as error:
        raise ProviderError(label, "Unable to create network", _explanation(error)) from error
    return name


def _create_volume(client: docker.DockerClient, resource: PlannedResource) -> str:
    inputs = resource.inputs
    label = _label(resource)
    try:
        created = client.api.create_volume(
            str(inputs["name"]),
            driver=inputs.get("driver") or None,
            driver_opts=inputs.get("driverOpts") or None,
            labels=_labels(inputs) or None,
        )
    except APIError as error:
        raise ProviderError(label, "Unable to create volume", _explanation(error)) from error
    return str(created["Name"])


def _create_container(
    client: docker.DockerClient,
    resource: PlannedResource,
    image: str,
    log: Callable[[str], None],
    applied: Applied,
) -> tuple[str, bool]:
    """Create, connect, upload, start, wait, attach, as `resourceDockerContainerCreate`; return the name
    and whether the container runs (an attached one's exit code and log go to `applied`)."""
    api = client.api
    inputs = resource.inputs
    label = _label(resource)
    _refuse_redacted(label, inputs)
    name = str(inputs["name"])
    try:
        container_id = str(
            api.create_container(
                image, name=name, host_config=_host_config(client, label, inputs), **_config(label, inputs)
            )["Id"]
        )
    except APIError as error:
        raise ProviderError(label, "Unable to create container", _explanation(error)) from error
    log(f"{label}: created {name}")
    _connect_networks(client, label, container_id, inputs.get("networksAdvanced", []))
    for upload in inputs.get("uploads", []):
        _upload(client, label, container_id, upload)
    if inputs.get("start", True):
        try:
            api.start(container_id)
        except APIError as error:
            raise ProviderError(label, "Unable to start container", _explanation(error)) from error
        if inputs.get("wait", False):
            _wait_healthy(client, label, container_id, _int(label, "waitTimeout", inputs.get("waitTimeout", 60)))
    if inputs.get("attach", False):
        _wait_for_exit(client, label, container_id, bool(inputs.get("logs", False)), name, applied)
    state = api.inspect_container(container_id)["State"]
    if not state["Running"] and inputs.get("attach", False):
        applied.exit_codes[name] = int(state["ExitCode"])
    return name, bool(state["Running"])


def _wait_for_exit(
    client: docker.DockerClient, label: str, container_id: str, logs: bool, name: str, applied: Applied
) -> None:
    """`ContainerWait(not-running)` within the provider's create timeout (20 min unless the resource sets
    its own, which is an option, not an input), then the container's whole stdout and stderr (the provider
    follows them from the start: the same text once the container has exited)."""
    try:
        client.api.wait(container_id, timeout=_CREATE_TIMEOUT_S, condition="not-running")
    except APIError as error:
        raise ProviderError(label, "Unable to wait container end of execution", _explanation(error)) from error
    except requests.exceptions.ReadTimeout as error:
        message = "Unable to wait container end of execution: context deadline exceeded"
        raise ProviderError(label, message) from error
    if logs:
        try:
            output = client.api.logs(container_id, stdout=True, stderr=True, timestamps=False)
        except APIError as error:
            raise ProviderError(label, "unable to read container logs", _explanation(error)) from error
        applied.logs[name] = output.decode(errors="replace") if isinstance(output, bytes) else str(output)


def _config(label: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `create_container` besides image, name and host config."""
    command = inputs.get("command")
    if command is not None and "" in command:
        raise ProviderError(label, "values for command may not be empty")
    config: dict[str, Any] = {
        "command": command,
        "entrypoint": inputs.get("entrypoints"),
        "hostname": inputs.get("hostname") or None,
        "user": inputs.get("user") or None,
        "environment": inputs.get("envs") or None,
        "labels": _labels(inputs) or None,
        "stop_signal": inputs.get("stopSignal") or None,
        "stop_timeout": _int(label, "stopTimeout", inputs.get("stopTimeout", 0)) or None,
        "ports": {
            f"{_int(label, 'internal', p['internal'])}/{p.get('protocol', 'tcp')}": {} for p in inputs.get("ports", [])
        }
        or None,
        "volumes": [str(v["containerPath"]) for v in _mounts(label, inputs) if v.get("containerPath")] or None,
        "healthcheck": _healthcheck(label, inputs["healthcheck"]) if "healthcheck" in inputs else None,
        "detach": True,
        "use_config_proxy": False,  # the provider adds no proxy variables from ~/.docker/config.json
    }
    return config


def _host_config(client: docker.DockerClient, label: str, inputs: Mapping[str, Any]) -> HostConfig:
    binds, volumes_from = [], []
    for mount in _mounts(label, inputs):
        source = mount.get("hostPath") or mount.get("volumeName")
        if mount.get("fromContainer"):
            volumes_from.append(str(mount["fromContainer"]))
        elif source:
            binds.append(f"{source}:{mount['containerPath']}:{'ro' if mount.get('readOnly') else 'rw'}")
    port_bindings: dict[int | str, list[dict[str, str]]] = {}
    for port in inputs.get("ports", []):
        key = f"{_int(label, 'internal', port['internal'])}/{port.get('protocol', 'tcp')}"
        binding = {
            "HostIp": str(port.get("ip", "0.0.0.0")),
            "HostPort": str(_int(label, "external", port.get("external", 0))),
        }
        port_bindings.setdefault(key, []).append(binding)
    capabilities = inputs.get("capabilities", {})
    security = list(inputs.get("securityOpts", []))
    if "systempaths=unconfined" in security:
        raise UnsupportedInputError(label, "securityOpts systempaths=unconfined (masked/read-only paths) is not mapped")
    restart = str(inputs.get("restart", "no"))
    if not _RESTART.match(restart):
        raise ProviderError(label, f"restart {restart!r} must match {_RESTART.pattern}")
    return client.api.create_host_config(
        binds=binds or None,
        volumes_from=volumes_from or None,
        port_bindings=port_bindings or None,
        tmpfs=dict(inputs.get("tmpfs", {})) or None,
        cap_add=list(capabilities.get("adds", [])) or None,
        cap_drop=list(capabilities.get("drops", [])) or None,
        security_opt=security or None,
        mem_limit=_int(label, "memory", inputs.get("memory", 0)) * 1024 * 1024 or None,
        mem_reservation=_int(label, "memoryReservation", inputs.get("memoryReservation", 0)) * 1024 * 1024 or None,
        nano_cpus=_nano_cpus(label, str(inputs["cpus"])) if inputs.get("cpus") else None,
        restart_policy={
            "Name": restart,
            "MaximumRetryCount": _int(label, "maxRetryCount", inputs.get("maxRetryCount", 0)),
        },
        read_only=bool(inputs.get("readOnly", False)),
        log_config=LogConfig(type=str(inputs.get("logDriver", "")), config=dict(inputs.get("logOpts", {}))),
        network_mode=str(inputs.get("networkMode", "bridge")),
        init=False,
    )


def _connect_networks(
    client: docker.DockerClient, label: str, container_id: str, attachments: Sequence[Mapping[str, Any]]
) -> None:
    if not attachments:
        return
    try:
        client.api.disconnect_container_from_network(container_id, "bridge")
    except APIError as error:
        if "is not connected to the network bridge" not in _explanation(error):
            raise ProviderError(label, "Unable to disconnect the default network", _explanation(error)) from error
    for attachment in attachments:
        network = str(attachment["name"])
        try:
            client.api.connect_container_to_network(
                container_id,
                network,
                aliases=list(attachment.get("aliases", [])) or None,
                ipv4_address=attachment.get("ipv4Address") or None,
                ipv6_address=attachment.get("ipv6Address") or None,
            )
        except APIError as error:
            raise ProviderError(label, f"Unable to connect to network '{network}'", _explanation(error)) from error


def _upload(client: docker.DockerClient, label: str, container_id: str, upload: Mapping[str, Any]) -> None:
    """One archive for one file, extracted at "/" as the Go client's CopyToContainer does. docker-py's
    put_archive cannot send noOverwriteDirNonDir, so the request is made here."""
    api = client.api
    response = api.put(
        f"{api.base_url}/v{api.api_version}/containers/{container_id}/archive",
        params={"path": "/", "noOverwriteDirNonDir": "true"},
        data=_upload_archive(label, upload),
        timeout=api.timeout,
    )
    if not response.ok:
        try:
            message = str(response.json()["message"])
        except ValueError:
            message = response.text
        raise ProviderError(label, "Unable to upload volume content", message)


def _upload_archive(label: str, upload: Mapping[str, Any]) -> bytes:
    given = [key for key in ("content", "contentBase64") if upload.get(key)]
    if len(given) != 1:
        raise ProviderError(
            label,
            f"error with upload content of {upload.get('file')}: exactly one of 'content', 'content_base64', "
            "or 'source' must be set",
        )
    if given == ["content"]:
        data = str(upload["content"]).encode()
    else:
        try:
            data = base64.b64decode(str(upload["contentBase64"]), validate=True)
        except binascii.Error as error:
            raise ProviderError(label, f"content_base64 of {upload.get('file')} is not base64") from error
    permissions = str(upload.get("permissions", ""))
    if permissions and not _PERMISSIONS.match(permissions):
        raise ProviderError(label, f"permissions {permissions!r} must match {_PERMISSIONS.pattern}")
    header = tarfile.TarInfo(str(upload["file"]))
    header.size = len(data)
    header.mode = int(permissions, 8) if permissions else (0o744 if upload.get("executable") else 0o644)
    header.mtime = int(time.time())
    header.uid = _file_id(label, upload.get("owner"), lambda name: pwd.getpwnam(name).pw_uid)
    header.gid = _file_id(label, upload.get("group"), lambda name: grp.getgrnam(name).gr_gid)
    buffer = io.BytesIO()
    # Go's tar writer emits USTAR when the fields fit (PAX otherwise); Python's PAX writer does the same.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(header, io.BytesIO(data))
    return buffer.getvalue()


def _file_id(label: str, value: object, lookup: Callable[[str], int]) -> int:
    if value is None or value == "":
        return 0
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError as error:
        raise ProviderError(label, f"upload owner/group {text!r} is not known on this host") from error


def _wait_healthy(client: docker.DockerClient, label: str, container_id: str, timeout_s: int) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        health = client.api.inspect_container(container_id)["State"].get("Health")
        if health is None:
            raise ProviderError(
                label,
                "you have supplied a 'wait' argument, but the container does not have a healthcheck defined",
            )
        if health["Status"] == "healthy":
            return
        if time.monotonic() >= deadline:
            raise ProviderError(label, "container failed to be in healthy state")
        time.sleep(1)


def _remove(label: str, remove: Callable[[], None], busy: str) -> bool:
    """Remove, retrying while Docker says `busy`; False when it was already gone."""
    deadline = time.monotonic() + _REMOVAL_TIMEOUT_S
    while True:
        try:
            remove()
            return True
        except NotFound:
            return False
        except APIError as error:
            if busy not in _explanation(error) or time.monotonic() >= deadline:
                raise ProviderError(label, "Unable to remove", _explanation(error)) from error
            time.sleep(1)


# ---------------------------------------------------------------------------------------------------
# Input values


def check_inputs(resources: Sequence[PlannedResource]) -> None:
    """Refuse any input key of a network, volume or container that the applier does not map, so that a
    field the plan starts to use is never silently ignored. `apply` calls it before creating anything."""
    for resource in resources:
        known = _KEYS.get(resource.type, set())
        unknown = [key for key in resource.inputs if key not in known]
        for key in known & _NESTED_KEYS.keys():
            value = resource.inputs.get(key, [])
            for item in value if isinstance(value, list) else [value]:
                unknown += [f"{key}.{nested}" for nested in item if nested not in _NESTED_KEYS[key]]
        if unknown and resource.type in _KEYS:
            raise UnsupportedInputError(_label(resource), f"the applier does not map {', '.join(sorted(unknown))}")


def _refuse_redacted(label: str, value: object) -> None:
    """Inputs must carry revealed secrets; a redacted plan (`make plan FORMAT=json`) cannot be applied."""
    if isinstance(value, str) and (value == SECRET or value.endswith(f"={SECRET}")):
        raise UnsupportedInputError(label, f"a value is the redacted {SECRET!r}: apply needs the revealed plan")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_redacted(label, item)
    if isinstance(value, list):
        for item in value:
            _refuse_redacted(label, item)


def _int(label: str, key: str, value: object) -> int:
    """Pulumi sends numbers as floats; the provider's schema takes whole numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ProviderError(label, f"{key} = {value!r} must be a whole number")
    return int(value)


def _labels(inputs: Mapping[str, Any]) -> dict[str, str]:
    return {str(item["label"]): str(item["value"]) for item in inputs.get("labels", [])}


def _mounts(label: str, inputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    mounts: list[Mapping[str, Any]] = inputs.get("volumes", [])
    for mount in mounts:
        if bool(mount.get("fromContainer")) == bool(mount.get("containerPath")):
            raise ProviderError(label, "Unable to parse volumes: give exactly one of a container path or a container")
    return mounts


def _healthcheck(label: str, check: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "test": list(check.get("tests", [])),
        "interval": _duration(label, str(check.get("interval", "0s"))),
        "timeout": _duration(label, str(check.get("timeout", "0s"))),
        "start_period": _duration(label, str(check.get("startPeriod", "0s"))),
        "retries": _int(label, "retries", check.get("retries", 0)),
    }


def _duration(label: str, text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s", "500ms"); negative values are refused."""
    if text == "0":
        return 0
    if not text or _DURATION.sub("", text):
        raise ProviderError(label, f"{text!r} is not a duration >= 0 (ms|s|m|h)")
    total = sum(Fraction(number) * _NANOSECONDS[unit] for number, unit in _DURATION.findall(text))
    return int(total)


def _nano_cpus(label: str, cpus: str) -> int:
    """docker/cli opts.ParseCPUs: a rational number of CPUs, exact in nanoCPUs."""
    try:
        nano = Fraction(cpus) * 10**9
    except (ValueError, ZeroDivisionError) as error:
        raise ProviderError(label, f"Error setting cpus: failed to parse {cpus} as a rational number") from error
    if nano.denominator != 1:
        raise ProviderError(label, "Error setting cpus: value is too precise")
    return int(nano)
