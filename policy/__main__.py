"""The 1001 Stories policy pack: `pulumi preview --policy-pack policy`. Constructing the PolicyPack
starts the policy server, so it happens here only; the rules live in validators.py."""

import sys
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project: model.images

from policy.props import Resource, ResourcePolicy, StackPolicy
from policy.validators import RESOURCE_POLICIES, STACK_POLICIES


def resource_policy(policy: ResourcePolicy) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in policy.validate(args.resource_type, args.props, args.name):
            report_violation(message, None)

    return ResourceValidationPolicy(policy.name, policy.description, validate, EnforcementLevel.MANDATORY)


def stack_policy(policy: StackPolicy) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            Resource(r.resource_type, r.name, r.parent.name if r.parent else None, r.props) for r in args.resources
        ]
        for message in policy.validate(resources):
            report_violation(message, None)

    return StackValidationPolicy(policy.name, policy.description, validate, EnforcementLevel.MANDATORY)


PolicyPack(
    name="stories-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*map(resource_policy, RESOURCE_POLICIES), *map(stack_policy, STACK_POLICIES)],
)
