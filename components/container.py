"""One hardened Docker container: the conventions every service shares, decided once.

Memory limit and reservation, cpus, json-file logs 10m x 3, restart unless-stopped, no-new-privileges,
every capability dropped except the ones a spec names (with its reason), read-only root with tmpfs,
a healthcheck, labels naming stack and service, explicit network_mode, and a fixed name with
delete-before-replace, or, for a rolling service (the app's replicas), a name that changes with the
container's definition, so that Pulumi's default order holds: the new container is created (and healthy)
before the old one is stopped gracefully and removed.

Config files reach a read-only service through a config container. The Docker provider copies each of
a container's `uploads` as an archive extracted at `/`, and Docker refuses any extraction at `/` into a
container whose root filesystem is read-only, even when every file lands in a volume. So each directory
of uploaded files is a small named volume; a config container `<name>-config` (same image, writable
root, never started, no network) receives the uploads into those volumes, and the service mounts them
read-only. The config container's id is a label of the service: when a file changes, the config
container is replaced, its id changes, and so the service is replaced and starts with the new files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker

from model.settings import Resources

LOG_OPTS = {"max-size": "10m", "max-file": "3"}
LABEL_PREFIX = "org.1001stories"
SECRET_PERMISSIONS = "0400"


@dataclass(frozen=True)
class Upload:
    name: str
    content: pulumi.Input[str]
    secret: bool = False
    executable: bool = False


@dataclass(frozen=True)
class UploadDir:
    """Files uploaded into one directory; `owner` is the uid that must read secret files."""

    path: str
    files: Sequence[Upload]
    owner: str | None = None


@dataclass(frozen=True)
class Mount:
    """A named volume (`volume`) or a host path (`host_path`) at `target`."""

    target: str
    volume: docker.Volume | None = None
    host_path: str | None = None
    read_only: bool = False


@dataclass(frozen=True)
class Attachment:
    network: docker.Network
    aliases: Sequence[str] = ()


@dataclass(frozen=True)
class Port:
    internal: int
    external: int
    ip: str = "127.0.0.1"


@dataclass(frozen=True)
class Healthcheck:
    command: Sequence[str]
    interval: str = "30s"
    timeout: str = "5s"
    retries: int = 3
    start_period: str = "30s"


@dataclass(frozen=True)
class ServiceSpec:
    service: str
    image: pulumi.Input[str]
    image_ref: str  # the pinned reference, recorded as a label (the image input is the pulled id)
    resources: Resources
    networks: Sequence[Attachment]
    healthcheck: Healthcheck | None
    no_healthcheck_reason: str = ""
    command: Sequence[pulumi.Input[str]] | None = None
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    upload_dirs: Sequence[UploadDir] = ()
    mounts: Sequence[Mount] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    read_only: bool = True
    cap_add: Mapping[str, str] = field(default_factory=dict)  # capability -> why it is needed
    ports: Sequence[Port] = ()
    stop_signal: str | None = None
    stop_timeout_seconds: int | None = None
    replica: int | None = None
    start: bool = True  # False: created stopped, and Pulumi does not keep it running (the scaler may)
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = ()
    # A one-shot: `pulumi up` waits until it exits (attach) and keeps its log and exit code (logs); it is
    # never restarted nor started again (restart "no", must_run false), so it runs once per container,
    # and a new container (a changed input) runs again. `timeout_seconds` bounds the provider's wait.
    one_shot: bool = False
    timeout_seconds: int | None = None
    # Wait until the healthcheck passes before `pulumi up` creates what depends on this container.
    wait_healthy_seconds: int | None = None
    # Replaced create-before-delete under a new name (`<name>-<generation>`, the generation a hash of the
    # container's definition), stopped with `stop_timeout_seconds` of grace when it goes; see README "Deploys".
    rolling: bool = False
    # Uploaded files the service picks up by itself (nginx reloads a changed nginx.conf): a change to them
    # replaces the config container only; a change to any other uploaded file replaces the service too.
    reloaded: Sequence[str] = ()
    role: str | None = None  # a label for rules and tools: "one-shot", "volume-owner"
    extra_labels: Mapping[str, str] = field(default_factory=dict)  # more labels, under org.1001stories.


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _env_list(env: Mapping[str, pulumi.Input[str]]) -> list[pulumi.Input[str]]:
    """NAME=value entries: a plain string where the value is one, an Output of its own where the value
    is an Output, so that only the secret entries are secret."""
    return [
        f"{name}={value}" if isinstance(value, str) else pulumi.Output.concat(name, "=", value)
        for name, value in sorted(env.items())
    ]


CONFIG_RESOURCES = Resources.model_validate({"memoryMb": 16, "memoryReservationMb": 8, "cpus": 0.05})
CONFIG_ROLE = "config"
NEVER_STARTED = "never started: it only holds the files uploaded into the service's config volumes"
ONE_SHOT_WAIT_MARGIN_SECONDS = 300


class HardenedContainer(pulumi.ComponentResource):
    """A container built from a `ServiceSpec`, with its config volumes and config container."""

    container: docker.Container

    def __init__(self, name: str, stack: str, spec: ServiceSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:docker:HardenedContainer", name, None, opts)
        if spec.healthcheck is None and not spec.no_healthcheck_reason:
            raise ValueError(f"{spec.service}: a container without a healthcheck must say why")
        container_name = f"{stack}-{name}"
        child = pulumi.ResourceOptions(parent=self)
        labels = _labels(stack, spec)
        mounts = list(spec.mounts)
        if spec.upload_dirs:
            volumes = [_config_volume(container_name, stack, spec, directory, child) for directory in spec.upload_dirs]
            config = self._config_container(name, container_name, stack, spec, volumes)
            mounts += [
                Mount(directory.path, volume=volume, read_only=True)
                for directory, volume in zip(spec.upload_dirs, volumes, strict=True)
            ]
            labels.append(docker.ContainerLabelArgs(label=f"{LABEL_PREFIX}.config", value=_config_label(spec, config)))
        # The provider waits for a one-shot's exit within its create timeout (20 min by default): give it the
        # container's own limit and a margin, so that the container, not the wait, runs out first.
        create_timeout = spec.timeout_seconds + ONE_SHOT_WAIT_MARGIN_SECONDS if spec.timeout_seconds else None
        args = _container_args(
            container_name, name if spec.networks else None, spec, labels, [_volume_args(m) for m in mounts]
        )
        if spec.rolling:
            args.name = generation_name(container_name, args)
            args.destroy_grace_seconds = spec.stop_timeout_seconds
            opts = _rolling_options(self, spec.depends_on)
        else:
            opts = _fixed_name_options(self, spec.depends_on, create_timeout)
        self.container = docker.Container(name, args, opts=opts)
        self.register_outputs({"name": self.container.name})

    def _config_container(
        self, name: str, container_name: str, stack: str, spec: ServiceSpec, volumes: Sequence[docker.Volume]
    ) -> docker.Container:
        config_spec = ServiceSpec(
            service=spec.service,
            image=spec.image,
            image_ref=spec.image_ref,
            resources=CONFIG_RESOURCES,
            networks=[],
            healthcheck=None,
            no_healthcheck_reason=NEVER_STARTED,
            command=spec.command,
            entrypoint=spec.entrypoint,
            read_only=False,
            start=False,  # and no replica label: the scaler manages labelled replicas only
        )
        labels = [
            *_labels(stack, config_spec),
            docker.ContainerLabelArgs(label=f"{LABEL_PREFIX}.role", value=CONFIG_ROLE),
        ]
        args = _container_args(
            f"{container_name}-config",
            None,
            config_spec,
            labels,
            [
                _volume_args(Mount(directory.path, volume=volume))
                for directory, volume in zip(spec.upload_dirs, volumes, strict=True)
            ],
        )
        args.uploads = [_upload_args(directory, upload) for directory in spec.upload_dirs for upload in directory.files]
        return docker.Container(f"{name}-config", args, opts=_fixed_name_options(self, ()))


def _fixed_name_options(
    parent: pulumi.Resource, depends_on: Sequence[pulumi.Input[pulumi.Resource]], create_timeout: int | None = None
) -> pulumi.ResourceOptions:
    """Fixed names: the old container must go before its replacement can take the name."""
    return pulumi.ResourceOptions(
        parent=parent,
        delete_before_replace=True,
        replace_on_changes=["healthcheck"],
        depends_on=list(depends_on),
        custom_timeouts=pulumi.CustomTimeouts(create=f"{create_timeout}s") if create_timeout else None,
    )


def _config_label(spec: ServiceSpec, config: docker.Container) -> pulumi.Output[str]:
    """What replaces the service when its files change: the config container's id (a new one for any new
    file), or, when the service reloads some files itself, a digest of the others' contents only."""
    if not spec.reloaded:
        config_id: pulumi.Output[str] = config.id
        return config_id
    kept = [upload.content for d in spec.upload_dirs for upload in d.files if upload.name not in spec.reloaded]
    return public_digest(kept).apply(lambda hexdigest: f"files-{hexdigest[:16]}")


def _rolling_options(
    parent: pulumi.Resource, depends_on: Sequence[pulumi.Input[pulumi.Resource]]
) -> pulumi.ResourceOptions:
    """Pulumi's default replacement: create the new container, then delete the old one."""
    return pulumi.ResourceOptions(parent=parent, replace_on_changes=["healthcheck"], depends_on=list(depends_on))


GENERATION_LENGTH = 8


def generation_name(container_name: str, args: docker.ContainerArgs) -> pulumi.Output[str]:
    """`<container_name>-<generation>`: the generation is the first hex digits of a digest of every input of
    the container but its name, so that any change that replaces it (the provider replaces a container for
    nearly every input) also gives the replacement a name of its own."""
    definition = {key: value for key, value in vars(args).items() if key != "name"}
    return public_digest(definition).apply(lambda hexdigest: f"{container_name}-{hexdigest[:GENERATION_LENGTH]}")


def public_digest(value: pulumi.Input[Any]) -> pulumi.Output[str]:
    """SHA-256 (hex) of `value`, resolved, as JSON. Secrets may enter it and the result is declared not
    secret anyway: it is shown in names and labels, and a digest over all of a container's inputs, cut
    to 8 or 16 hex digits where it is shown, cannot confirm any one of them."""
    digest = pulumi.Output.from_input(value).apply(
        lambda resolved: hashlib.sha256(json.dumps(_plain(resolved), sort_keys=True).encode()).hexdigest()
    )
    return pulumi.Output.unsecret(digest)


def _plain(value: Any) -> Any:
    """An input, resolved, as JSON-able data (the provider's argument classes as dicts)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "__dict__"):
        return _plain(vars(value))
    return value


def _container_args(
    container_name: str,
    hostname: str | None,
    spec: ServiceSpec,
    labels: list[docker.ContainerLabelArgs],
    volumes: list[docker.ContainerVolumeArgs],
) -> docker.ContainerArgs:
    args = docker.ContainerArgs(
        name=container_name,
        image=spec.image,
        hostname=hostname,
        command=list(spec.command) if spec.command is not None else None,
        entrypoints=list(spec.entrypoint) if spec.entrypoint is not None else None,
        envs=_env_list(spec.env) if spec.env else None,
        user=spec.user,
        memory=spec.resources.memory_mb,
        memory_reservation=spec.resources.memory_reservation_mb,
        cpus=f"{spec.resources.cpus:g}",
        restart="no" if spec.one_shot else "unless-stopped",
        must_run=spec.start and not spec.one_shot,
        start=spec.start,
        read_only=spec.read_only,
        tmpfs=dict(spec.tmpfs) or None,
        security_opts=["no-new-privileges:true"],
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(spec.cap_add) or None),
        log_driver="json-file",
        log_opts=LOG_OPTS,
        # Created on the default bridge, which the provider leaves before connecting every network of
        # `networks_advanced` with its aliases: on the `network_mode` network itself Docker would keep
        # no alias (the provider creates the container with no endpoint settings, and connecting it
        # again to that network changes nothing), and peers find services by alias. Never started
        # while on the bridge. A config container has no network at all.
        network_mode="bridge" if spec.networks else "none",
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=attachment.network.name, aliases=list(attachment.aliases))
            for attachment in spec.networks
        ]
        or None,
        ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip) for p in spec.ports] or None,
        volumes=volumes or None,
        healthcheck=_healthcheck_args(spec.healthcheck),
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout_seconds,
        labels=labels,
    )
    if spec.one_shot:
        args.attach = True
        args.logs = True
    if spec.wait_healthy_seconds:
        args.wait = True
        args.wait_timeout = spec.wait_healthy_seconds
    return args


def _config_volume(
    container_name: str, stack: str, spec: ServiceSpec, directory: UploadDir, opts: pulumi.ResourceOptions
) -> docker.Volume:
    return docker.Volume(
        f"{spec.service}-{_slug(directory.path)}" + (f"-{spec.replica}" if spec.replica else ""),
        name=f"{container_name}-{_slug(directory.path)}",
        labels=[
            docker.VolumeLabelArgs(label=f"{LABEL_PREFIX}.stack", value=stack),
            docker.VolumeLabelArgs(label=f"{LABEL_PREFIX}.purpose", value="uploaded-config"),
        ],
        opts=opts,
    )


def _volume_args(mount: Mount) -> docker.ContainerVolumeArgs:
    return docker.ContainerVolumeArgs(
        container_path=mount.target,
        volume_name=mount.volume.name if mount.volume is not None else None,
        host_path=mount.host_path,
        read_only=mount.read_only,
    )


def _upload_args(directory: UploadDir, upload: Upload) -> docker.ContainerUploadArgs:
    content = pulumi.Output.secret(upload.content) if upload.secret else upload.content
    permissions = SECRET_PERMISSIONS if upload.secret else ("0555" if upload.executable else "0444")
    return docker.ContainerUploadArgs(
        file=f"{directory.path}/{upload.name}",
        content=content,
        permissions=permissions,
        owner=directory.owner if upload.secret else None,
    )


def _healthcheck_args(check: Healthcheck | None) -> docker.ContainerHealthcheckArgs | None:
    if check is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", *check.command],
        interval=check.interval,
        timeout=check.timeout,
        retries=check.retries,
        start_period=check.start_period,
    )


def _labels(stack: str, spec: ServiceSpec) -> list[docker.ContainerLabelArgs]:
    labels = {"stack": stack, "service": spec.service, "image": spec.image_ref}
    if spec.replica is not None:
        labels["replica"] = str(spec.replica)
    secret_env = sorted(name for name, value in spec.env.items() if isinstance(value, pulumi.Output))
    if secret_env:
        labels["secret-env"] = ",".join(secret_env)
    if spec.cap_add:
        labels["capabilities"] = "; ".join(f"{cap}: {why}" for cap, why in sorted(spec.cap_add.items()))
    if spec.role:
        labels["role"] = spec.role
    labels.update(spec.extra_labels)
    return [docker.ContainerLabelArgs(label=f"{LABEL_PREFIX}.{key}", value=value) for key, value in labels.items()]


def data_mount(
    name: str, stack: str, host_path: str | None, retain: bool, parent: pulumi.Resource, target: str
) -> Mount:
    """A service's data: the host path from config if one is set, else a named volume that by default
    survives the resource's deletion (a `pulumi destroy` must not take the students' data with it)."""
    if host_path:
        return Mount(target=target, host_path=host_path)
    volume = docker.Volume(
        f"{name}-data",
        name=f"{stack}-{name}-data",
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
    return Mount(target=target, volume=volume)


# ---------------------------------------------------------------------------------------------------
# One-shot containers: the provider waits for their exit and records it, the program decides


ONE_SHOT_LOG_LINES = 40
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")


class OneShotFailedError(pulumi.RunError):
    """A one-shot container exited non-zero: `pulumi up` stops before what depends on it, with its log."""


def one_shot_outcome(what: str, name: str, exit_code: int | None, logs: str | None, urn: str | None = None) -> None:
    """Raise with `what`'s log when it exited non-zero. pulumi-docker waits for an attached container's exit
    and keeps `exit_code` and `container_logs`, but never fails on them (terraform-provider-docker v4.5.0,
    resourceDockerContainerCreate): the program does. An unknown exit code (a preview, the mocks) passes."""
    if exit_code is None or int(exit_code) == 0:
        return
    lines = _URL_CREDENTIALS.sub("://[redacted]@", logs or "").rstrip().splitlines()[-ONE_SHOT_LOG_LINES:]
    shown = "\n".join(f"    {line}" for line in lines) or "    (no output)"
    again = f"pulumi up --replace '{urn}'" if urn else "pulumi up --replace <its urn>"
    raise OneShotFailedError(
        f"{what} ({name}) exited with code {int(exit_code)}: the deploy stops here, and the app replicas that "
        f"run are left as they are. Its log (last {ONE_SHOT_LOG_LINES} lines):\n{shown}\n"
        f"Fix the cause, then `pulumi up`: a new image or command runs it again; the same one runs again with "
        f"`{again}`, or by hand with `docker start -a {name}`."
    )


def after_success(what: str, container: docker.Container) -> pulumi.Output[Any]:
    """`container`, once it has exited 0: for `depends_on` of what must not start before it succeeded.
    A failure raises in the program, so nothing that depends on it is registered (nor replaced)."""

    def checked(args: list[Any]) -> docker.Container:
        exit_code, logs, name, urn = args
        one_shot_outcome(what, str(name), exit_code, logs, urn)
        return container

    return pulumi.Output.all(container.exit_code, container.container_logs, container.name, container.urn).apply(
        checked
    )
