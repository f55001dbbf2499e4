"""The guardrails, as plain functions: resource inputs in, violation messages out (each says what to
change). `__main__.py` wraps them in a pulumi_policy PolicyPack; the tests call them directly with the
real plan of every stack and with deliberately broken resources.

Inputs are the camelCase properties Pulumi sends to the provider, as in `make plan FORMAT=json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from model.images import parse_image
from policy.engine import ENGINE_RESOURCE_POLICIES, ENGINE_STACK_POLICIES
from policy.props import (
    CONTAINER,
    LABEL,
    Props,
    Resource,
    ResourcePolicy,
    StackPolicy,
    is_config_container,
    labels,
    service,
)

# Services allowed a writable root filesystem, and why.
WRITABLE_ROOT_ALLOWED = {"certbot": "certbot's plugins and lock files live in its image paths"}
PUBLIC_SERVICE = "nginx"
PUBLIC_PORTS = {80, 443}
LOOPBACK = "127.0.0.1"
K8S_WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:core/v1:Pod",
}


def _image_problem(reference: Any, where: str) -> list[str]:
    if not isinstance(reference, str):
        return []  # unknown during a preview; checked when known
    try:
        parse_image(reference)
    except ValueError as error:
        return [f"{where}: image {reference!r} {error}"]
    return []


# --- Docker containers --------------------------------------------------------------------------


def container_resources(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type != CONTAINER:
        return []
    problems = []
    memory, reservation = props.get("memory"), props.get("memoryReservation")
    if not memory:
        problems.append(f"{name}: set a memory limit (memory, in MB)")
    if not reservation:
        problems.append(f"{name}: set a memory reservation (memoryReservation, in MB)")
    elif memory and reservation > memory:
        problems.append(f"{name}: memoryReservation ({reservation}) must not exceed memory ({memory})")
    if not props.get("cpus"):
        problems.append(f'{name}: set cpus (a CPU quota in cores, e.g. "0.5")')
    return problems


def no_privileged(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type == CONTAINER and props.get("privileged"):
        return [f"{name}: remove privileged: true; add the one capability the service needs instead"]
    return []


def host_ports(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type != CONTAINER:
        return []
    name_of_service = service(props, name)
    problems = []
    for port in props.get("ports") or []:
        external, ip = port.get("external"), port.get("ip") or "0.0.0.0"
        if name_of_service == PUBLIC_SERVICE and external in PUBLIC_PORTS:
            continue
        if ip != LOOPBACK:
            problems.append(
                f"{name}: port {external} is published on {ip}; only nginx publishes 80 and 443 to the world, "
                f"bind others to ip {LOOPBACK}"
            )
    return problems


def pinned_images(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type == "docker:index/remoteImage:RemoteImage":
        return _image_problem(props.get("name"), name)
    if resource_type == "docker:index/image:Image":
        return _image_problem(props.get("imageName"), name)
    if resource_type == CONTAINER:
        reference = labels(props).get(f"{LABEL}image")
        if reference is None:
            return [f"{name}: label {LABEL}image with the pinned image reference is missing"]
        return _image_problem(reference, name)
    return []


def no_new_privileges(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type == CONTAINER and "no-new-privileges:true" not in (props.get("securityOpts") or []):
        return [f'{name}: add securityOpts ["no-new-privileges:true"]']
    return []


def log_rotation(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type != CONTAINER:
        return []
    options = props.get("logOpts") or {}
    if props.get("logDriver") != "json-file" or not options.get("max-size") or not options.get("max-file"):
        return [f"{name}: set logDriver json-file with logOpts max-size and max-file (10m x 3)"]
    return []


def read_only_root(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type != CONTAINER or props.get("readOnly") or is_config_container(props):
        return []
    if service(props, name) in WRITABLE_ROOT_ALLOWED:
        return []
    return [f"{name}: set readOnly: true (with tmpfs for scratch paths) or add the service to WRITABLE_ROOT_ALLOWED"]


# --- Kubernetes workloads -----------------------------------------------------------------------


def _pod_spec(resource_type: str, props: Props) -> Mapping[str, Any]:
    spec = props.get("spec") or {}
    if resource_type == "kubernetes:core/v1:Pod":
        return spec
    if resource_type == "kubernetes:batch/v1:CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def kubernetes_pod_security(resource_type: str, props: Props, name: str) -> list[str]:
    if resource_type not in K8S_WORKLOADS:
        return []
    pod = _pod_spec(resource_type, props)
    pod_non_root = (pod.get("securityContext") or {}).get("runAsNonRoot")
    problems = []
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        where = f"{name}/{container.get('name', '?')}"
        context = container.get("securityContext") or {}
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if not limits.get("memory") or not requests.get("memory") or not limits.get("cpu"):
            problems.append(f"{where}: set resources.limits.memory, resources.requests.memory and limits.cpu")
        if context.get("privileged"):
            problems.append(f"{where}: remove securityContext.privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: set securityContext.allowPrivilegeEscalation: false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{where}: set securityContext.capabilities.drop: [ALL]")
        if not context.get("readOnlyRootFilesystem") and container.get("name") not in WRITABLE_ROOT_ALLOWED:
            problems.append(f"{where}: set securityContext.readOnlyRootFilesystem: true")
        if not (context.get("runAsNonRoot") or pod_non_root):
            problems.append(f"{where}: set runAsNonRoot: true (pod or container securityContext)")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{where}: remove hostPort; expose the pod through a Service or the ingress")
        problems += _image_problem(container.get("image"), where)
    return problems


# --- S3 buckets (a stack policy: the protections are sibling resources of the bucket) -----------


def _denies_insecure_transport(policy: Any) -> bool:
    if not isinstance(policy, str):
        return True  # unknown during a preview (it embeds the bucket's ARN); checked when known
    document = json.loads(policy)
    return any(
        statement.get("Effect") == "Deny"
        and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
        for statement in document.get("Statement", [])
    )


def s3_bucket_protections(resources: Sequence[Resource]) -> list[str]:
    problems = []
    for bucket in (r for r in resources if r.type == "aws:s3/bucket:Bucket"):
        siblings = {r.type: r.props for r in resources if r.parent == bucket.parent and r is not bucket}
        block = siblings.get("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        if not block or not all(block.get(flag) for flag in flags):
            problems.append(f"{bucket.name}: add a BucketPublicAccessBlock with {', '.join(flags)} all true")
        encryption = siblings.get(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        if not encryption or not encryption.get("rules"):
            problems.append(f"{bucket.name}: add a BucketServerSideEncryptionConfiguration (AES256 or aws:kms)")
        versioning = siblings.get("aws:s3/bucketVersioning:BucketVersioning")
        if not versioning or (versioning.get("versioningConfiguration") or {}).get("status") != "Enabled":
            problems.append(f"{bucket.name}: add a BucketVersioning with status Enabled")
        policy = siblings.get("aws:s3/bucketPolicy:BucketPolicy")
        if not policy or not _denies_insecure_transport(policy.get("policy")):
            problems.append(f"{bucket.name}: add a BucketPolicy that denies requests with aws:SecureTransport false")
    return problems


RESOURCE_POLICIES = [
    ResourcePolicy(
        "container-resources", "Every container has a memory limit, a memory reservation and cpus.", container_resources
    ),
    ResourcePolicy("no-privileged-containers", "No container runs privileged.", no_privileged),
    ResourcePolicy("no-public-host-ports", "Only nginx publishes ports (80, 443); others bind 127.0.0.1.", host_ports),
    ResourcePolicy("pinned-images", "Every image is pinned to an explicit version tag.", pinned_images),
    ResourcePolicy("no-new-privileges", "Every container sets no-new-privileges.", no_new_privileges),
    ResourcePolicy("log-rotation", "Every container rotates its json-file logs.", log_rotation),
    ResourcePolicy("read-only-root", "Root filesystems are read-only unless allow-listed.", read_only_root),
    ResourcePolicy(
        "kubernetes-pod-security",
        "Kubernetes workloads: limits, non-root, no escalation, read-only.",
        kubernetes_pod_security,
    ),
    *ENGINE_RESOURCE_POLICIES,
]
STACK_POLICIES = [
    StackPolicy(
        "s3-bucket-protections",
        "S3 buckets: public access blocked, encrypted, versioned, TLS only.",
        s3_bucket_protections,
    ),
    *ENGINE_STACK_POLICIES,
]


def violations(resources: Iterable[Resource]) -> list[str]:
    """Every violation of every policy in a list of resources (what the tests and tools use)."""
    listed = list(resources)
    found = [
        message for r in listed for policy in RESOURCE_POLICIES for message in policy.validate(r.type, r.props, r.name)
    ]
    return found + [message for policy in STACK_POLICIES for message in policy.validate(listed)]
