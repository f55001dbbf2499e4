"""Shared fixtures: the offline plan of every stack, computed once per session."""

from __future__ import annotations

import pytest

from tools.plan import STACKS, Plan, run_plan

_PLANS: dict[str, Plan] = {}


def plan_of(stack: str) -> Plan:
    if stack not in _PLANS:
        _PLANS[stack] = run_plan(stack)
    return _PLANS[stack]


@pytest.fixture(params=STACKS)
def stack_plan(request: pytest.FixtureRequest) -> Plan:
    return plan_of(request.param)
