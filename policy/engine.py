"""The Docker engine's rules, which mocks never enforce (each was a `pulumi up` that would have failed or
a platform that would not have worked; README: "The e2e layer"):

- Docker refuses uploads into a container with a read-only root (the provider extracts them at `/`).
- A writable named volume mounted where the image has no directory owned by the service's user is
  root-owned 0755, and the service cannot write it, unless a one-shot of the stack hands it to that user
  first (role volume-owner, with CHOWN).
- A service that must reach outside (S3, ACME, outside APIs) needs a network with a route out; Docker's
  internal networks have none.
- Aliases given for a container's `network_mode` network never reach Docker (the provider connects
  the networks after creating the container, and connecting it again to that network changes nothing).
- A container created stopped has no DNS name: nothing may probe or route to it by name unless it
  tolerates the name's absence (nginx's `resolve`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from model.images import IMAGE_DIRECTORIES
from policy.props import CONTAINER, LABEL, NETWORK, Props, Resource, ResourcePolicy, StackPolicy, is_config_container
from policy.props import labels as labels_of
from policy.props import service as service_of

# Services that reach outside whenever they run, and those that do when backups go to S3.
ALWAYS_EGRESS = {"app": "e-mail, OAuth and the OpenAI API", "certbot": "the ACME server"}
S3_EGRESS_ENV = "PGBACKREST_REPO1_S3_BUCKET"


def no_uploads_into_read_only(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type == CONTAINER and props.get("readOnly") and props.get("uploads"):
        return [
            f"{name}: Docker refuses uploads into a container with a read-only root (the provider extracts them "
            "at /); upload into its config container's volumes instead (components/container.py)"
        ]
    return []


def aliases_reach_the_engine(resource_type: str, props: Props, name: str) -> list[str]:
    """The provider creates a container on `network_mode` with no endpoint settings and then connects
    each of `networks_advanced`; connecting again to the `network_mode` network changes nothing, so
    the aliases given for that network never reach Docker."""
    if resource_type != CONTAINER:
        return []
    return [
        f"{name}: the aliases {network.get('aliases')} on {network['name']} (its network_mode) would be lost; "
        'set networkMode "bridge" (the provider leaves it before connecting the networks)'
        for network in props.get("networksAdvanced") or []
        if network.get("name") == props.get("networkMode") and network.get("aliases")
    ]


def _uid(props: Props) -> int | None:
    user = str(props.get("user") or "").split(":")[0]
    return int(user) if user.isdigit() else None


def volume_owners(resource_type: str, props: Props, name: str, owned: Mapping[str, int] | None = None) -> list[str]:
    """`owned`: volumes that a one-shot of the stack gives to a uid before the services start."""
    uid = _uid(props)
    if resource_type != CONTAINER or is_config_container(props) or not uid:
        return []
    directories = IMAGE_DIRECTORIES.get(service_of(props, name), {})
    return [
        f"{name}: volume {volume['volumeName']} is mounted writable at {volume['containerPath']}, where the image "
        f"has no directory owned by uid {uid}: Docker would create it root-owned 0755; create the directory in "
        "the image (and record it in model/images.py IMAGE_DIRECTORIES), give the volume its owner first (a "
        "one-shot with role volume-owner, components/app.py) or mount another path"
        for volume in props.get("volumes") or []
        if volume.get("volumeName") and not volume.get("readOnly")
        if directories.get(volume["containerPath"]) != uid and (owned or {}).get(volume["volumeName"]) != uid
    ]


def owned_volumes(resources: Sequence[Resource]) -> dict[str, int]:
    """Volume -> the uid that a one-shot gives its top directory to: a container that runs (not a config
    container) with the labels role=volume-owner and owner=<uid>:<gid>, CHOWN among its capabilities, and
    the volume mounted writable."""
    owned: dict[str, int] = {}
    for resource in resources:
        props = resource.props
        found = labels_of(props)
        uid = found.get(f"{LABEL}owner", "").split(":")[0]
        chown = "CHOWN" in ((props.get("capabilities") or {}).get("adds") or [])
        if resource.type != CONTAINER or found.get(f"{LABEL}role") != "volume-owner" or props.get("start") is False:
            continue
        if not uid.isdigit() or not chown:
            continue
        for volume in props.get("volumes") or []:
            if volume.get("volumeName") and not volume.get("readOnly"):
                owned[str(volume["volumeName"])] = int(uid)
    return owned


def volume_owners_of_stack(resources: Sequence[Resource]) -> list[str]:
    owned = owned_volumes(resources)
    return [message for r in resources for message in volume_owners(r.type, r.props, r.name, owned)]


def _needs_egress(props: Props, name: str) -> str | None:
    service = service_of(props, name)
    if service in ALWAYS_EGRESS:
        return ALWAYS_EGRESS[service]
    if any(str(entry).startswith(f"{S3_EGRESS_ENV}=") for entry in _plain_list(props.get("envs"))):
        return "the S3 backup repository"
    return None


def _plain_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _has_route_out(network: Props) -> bool:
    """Not internal; or one of the stack's egress networks, which an isolated test host makes internal
    with stand-ins for the outside attached (networks.egressInternal)."""
    return not network.get("internal") or labels_of(network).get(f"{LABEL}role", "").startswith("egress-")


def egress_where_needed(resources: Sequence[Resource]) -> list[str]:
    networks = {r.props.get("name"): r.props for r in resources if r.type == NETWORK}
    problems = []
    for container in _services(resources):
        reason = _needs_egress(container.props, container.name)
        attached = [networks.get(n.get("name"), {}) for n in container.props.get("networksAdvanced") or []]
        if reason and not any(_has_route_out(network) for network in attached):
            problems.append(
                f"{container.name}: must reach {reason}, but every network it joins is internal (no route out); "
                "attach its egress network (components/network.py)"
            )
    return problems


def _services(resources: Sequence[Resource]) -> Iterator[Resource]:
    return (r for r in resources if r.type == CONTAINER and not is_config_container(r.props))


def _own_names(container: Props, shared: set[str]) -> set[str]:
    names = {str(container.get("hostname") or "")}
    for network in container.get("networksAdvanced") or []:
        names.update(network.get("aliases") or [])
    return {name for name in names if name} - shared


def stopped_replicas_tolerated(resources: Sequence[Resource]) -> list[str]:
    """No uploaded file names a container created stopped (host:port), except an nginx upstream server
    with `resolve`, which tolerates a name that does not resolve."""
    services = list(_services(resources))
    started = [c.props for c in services if c.props.get("start") is not False]
    shared = set().union(*(_own_names(props, set()) for props in started)) if started else set()
    stopped = {name for c in services if c.props.get("start") is False for name in _own_names(c.props, shared)}
    problems = []
    for container in (r for r in resources if r.type == CONTAINER):
        for upload in _plain_list(container.props.get("uploads")):
            content = upload.get("content")
            if not isinstance(content, str):
                continue
            for line in content.splitlines():
                for name in stopped:
                    if re.search(rf"(?<![\w.-]){re.escape(name)}:\d+", line) and not _tolerant_upstream(line):
                        problems.append(
                            f"{container.name}: {upload.get('file')} names {name}, which is created stopped and "
                            f"has no DNS name until it runs: {line.strip()!r}"
                        )
    return problems


def _tolerant_upstream(line: str) -> bool:
    return bool(re.match(r"\s*server\s+\S+.*\sresolve\b", line))


ENGINE_RESOURCE_POLICIES = [
    ResourcePolicy(
        "no-uploads-into-read-only",
        "No uploads into a read-only container: Docker refuses them.",
        no_uploads_into_read_only,
    ),
    ResourcePolicy(
        "aliases-reach-the-engine",
        "No network aliases on a container's network_mode network: Docker would not keep them.",
        aliases_reach_the_engine,
    ),
]
ENGINE_STACK_POLICIES = [
    StackPolicy(
        "volume-owners",
        "Writable volumes are mounted where the image has a directory owned by the service's user, or a "
        "one-shot gives them to that user first.",
        volume_owners_of_stack,
    ),
    StackPolicy(
        "egress-where-needed", "Services that reach outside join a network with a route out.", egress_where_needed
    ),
    StackPolicy(
        "stopped-replicas-tolerated",
        "Nothing probes or routes by name to a container created stopped, unless it tolerates its absence.",
        stopped_replicas_tolerated,
    ),
]
