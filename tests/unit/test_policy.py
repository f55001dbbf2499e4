"""The policy pack's validators: every stack's real plan passes, each broken resource is reported with
a message that says what to change, and the pack's entry point wires every validator as mandatory."""

from __future__ import annotations

import copy
import json
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from policy.props import CONTAINER, Resource
from policy.validators import (
    RESOURCE_POLICIES,
    STACK_POLICIES,
    kubernetes_pod_security,
    s3_bucket_protections,
    violations,
)
from tests.conftest import plan_of
from tools.plan import STACKS, Plan

ROOT = Path(__file__).resolve().parents[2]


def resources_of(plan: Plan) -> list[Resource]:
    """The plan's resources as a policy sees them, copies that a test may break."""
    return [Resource(r.type, r.name, r.parent, copy.deepcopy(r.inputs)) for r in plan.resources]


def container(plan: Plan, name: str) -> dict[str, Any]:
    return copy.deepcopy(plan.named(CONTAINER, name).inputs)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_every_policy(stack: str) -> None:
    assert violations(resources_of(plan_of(stack))) == []


def check(resource_type: str, props: dict[str, Any], name: str) -> list[str]:
    return [message for policy in RESOURCE_POLICIES for message in policy.validate(resource_type, props, name)]


BROKEN_CONTAINERS = [
    ("redis", lambda p: p.pop("memory"), "set a memory limit"),
    ("redis", lambda p: p.pop("memoryReservation"), "set a memory reservation"),
    ("redis", lambda p: p.update(memoryReservation=10_000), "must not exceed memory"),
    ("redis", lambda p: p.pop("cpus"), "set cpus"),
    ("postgres", lambda p: p.update(privileged=True), "remove privileged"),
    ("prometheus", lambda p: p["ports"][0].update(ip="0.0.0.0"), "bind others to ip 127.0.0.1"),
    ("redis", lambda p: p.update(ports=[{"internal": 6379, "external": 6379}]), "published on 0.0.0.0"),
    ("nginx", lambda p: p["ports"].append({"internal": 8081, "external": 8081, "ip": "0.0.0.0"}), "port 8081"),
    ("redis", lambda p: p["labels"].append({"label": "org.1001stories.image", "value": "redis:edge"}), "not a version"),
    ("redis", lambda p: p.update(securityOpts=[]), "no-new-privileges:true"),
    ("redis", lambda p: p.update(logOpts={}), "max-size and max-file"),
    ("postgres", lambda p: p.update(readOnly=False), "set readOnly: true"),
]


@pytest.mark.parametrize(("name", "breakage", "message"), BROKEN_CONTAINERS)
def test_each_broken_container_is_reported(name: str, breakage: Any, message: str) -> None:
    props = container(plan_of("prod"), name)
    if message == "not a version":
        props["labels"] = [label for label in props["labels"] if label["label"] != "org.1001stories.image"]
    breakage(props)
    found = check(CONTAINER, props, name)
    assert any(message in problem for problem in found), found


def test_unpinned_remote_image_is_reported() -> None:
    found = check("docker:index/remoteImage:RemoteImage", {"name": "postgres"}, "postgres-image")
    assert found == [
        "postgres-image: image 'postgres' must be repository:tag with an explicit version tag "
        "(for example postgres:15.13)"
    ]


BUCKET_BREAKAGES = [
    (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        lambda p: p.update(blockPublicPolicy=False),
        "BucketPublicAccessBlock",
    ),
    (
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        None,
        "BucketServerSideEncryptionConfiguration",
    ),
    (
        "aws:s3/bucketVersioning:BucketVersioning",
        lambda p: p["versioningConfiguration"].update(status="Suspended"),
        "BucketVersioning with status Enabled",
    ),
    (
        "aws:s3/bucketPolicy:BucketPolicy",
        lambda p: p.update(policy=json.dumps({"Statement": []})),
        "aws:SecureTransport false",
    ),
]


@pytest.mark.parametrize(("type_", "breakage", "message"), BUCKET_BREAKAGES)
def test_each_missing_bucket_protection_is_reported(type_: str, breakage: Any, message: str) -> None:
    resources = resources_of(plan_of("prod"))
    broken = []
    for resource in resources:
        if resource.type != type_:
            broken.append(resource)
        elif breakage is not None:
            props = copy.deepcopy(dict(resource.props))
            breakage(props)
            broken.append(Resource(resource.type, resource.name, resource.parent, props))
    (problem,) = s3_bucket_protections(broken)
    assert message in problem and problem.startswith("bucket: ")


GOOD_DEPLOYMENT: dict[str, Any] = {
    "spec": {
        "template": {
            "spec": {
                "securityContext": {"runAsNonRoot": True},
                "containers": [
                    {
                        "name": "app",
                        "image": "ghcr.io/1001-stories/app:1.7.3",
                        "resources": {"limits": {"memory": "1Gi", "cpu": "1"}, "requests": {"memory": "256Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            }
        }
    },
}


def test_kubernetes_workloads_need_the_pod_security_fields() -> None:
    kind = "kubernetes:apps/v1:Deployment"
    assert kubernetes_pod_security(kind, GOOD_DEPLOYMENT, "app") == []
    broken = copy.deepcopy(GOOD_DEPLOYMENT)
    pod = broken["spec"]["template"]["spec"]
    pod["securityContext"] = {}
    app = pod["containers"][0]
    app.update(image="ghcr.io/1001-stories/app:main", ports=[{"containerPort": 3000, "hostPort": 3000}])
    app["resources"] = {}
    app["securityContext"] = {"privileged": True}
    found = kubernetes_pod_security(kind, broken, "app")
    for expected in (
        "limits.memory",
        "remove securityContext.privileged",
        "allowPrivilegeEscalation: false",
        "drop: [ALL]",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "remove hostPort",
        "not a version",
    ):
        assert any(expected in message for message in found), (expected, found)


def test_entry_point_wires_every_validator_as_mandatory(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi_policy

    packs: list[dict[str, Any]] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: packs.append(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    (pack,) = packs
    names = [policy.name for policy in pack["policies"]]
    assert names == [p.name for p in RESOURCE_POLICIES] + [p.name for p in STACK_POLICIES]
    assert len(set(names)) == len(names)
    assert all(p.enforcement_level == pulumi_policy.EnforcementLevel.MANDATORY for p in pack["policies"])
    reported: list[str] = []
    args = types.SimpleNamespace(resource_type=CONTAINER, props={"memory": 64}, name="broken")
    pack["policies"][0].validate(args, lambda message, urn: reported.append(message))
    assert reported and all(message.startswith("broken: ") for message in reported)
