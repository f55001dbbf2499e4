"""Config messages: one line per problem, naming the exact key, its value (short) and the rule."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

import tools.plan as plan_module
from model.loading import MAX_VALUE_CHARS, ConfigError, Problem, load_settings
from tests.unit.test_settings import BAD_CONFIGS, with_change

FOUR_SEASONS = [
    {"name": "autumn-break", "start": "2026-10-26", "end": "2026-10-30", "factor": 0.5},
    {"name": "winter-break", "start": "2026-12-21", "end": "2027-01-01", "factor": 0.3},
    {"name": "exams", "start": "2027-06-07", "end": "2027-06-18", "factor": 2.5},
    {"name": "summer-break", "start": "2027-07-01", "end": "2027-08-31", "factor": 0.3},
]


def problems_of(config: Any) -> list[Problem]:
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    return raised.value.problems


def shown_value(problem: Problem) -> str:
    line = str(problem)
    return line.removeprefix(f"{problem.path} = ").removesuffix(f": {problem.rule}")


def test_the_issues_example_names_the_time_zone_not_the_scaling_object() -> None:
    config = with_change("scaling", {"enabled": True, "seasons": FOUR_SEASONS, "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert str(raised.value).splitlines()[1:] == [
        "  - settings.scaling.timezone = 'Mars/Olympus': is not an IANA time zone (e.g. Europe/Berlin)"
    ]


@pytest.mark.parametrize(("case", "config", "path", "rule"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_every_problem_is_one_line_with_a_short_value(case: str, config: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    lines = str(raised.value).splitlines()
    assert len(lines) == 1 + len(raised.value.problems), lines
    for line, problem in zip(lines[1:], raised.value.problems, strict=True):
        assert line == f"  - {problem}"
        assert len(shown_value(problem)) <= MAX_VALUE_CHARS, line


def test_a_value_of_several_lines_shows_its_first() -> None:
    pem = "-----BEGIN CERT-----\n" + "A" * 64 + "\n-----END CERT-----\n"
    (problem,) = problems_of(with_change("proxy.tls.acmeCaCertificatePem", pem))
    assert problem.path == "settings.proxy.tls.acmeCaCertificatePem"
    assert shown_value(problem) == "'-----BEGIN CERT-----…"


def test_a_long_value_is_cut_with_an_ellipsis() -> None:
    window = {"name": "w" * 200, "start": "08:00", "end": "20:00", "replicas": 1}
    (problem,) = problems_of(with_change("scaling.windows", [window]))
    assert problem.path == "settings.scaling.windows"
    shown = shown_value(problem)
    assert len(shown) == MAX_VALUE_CHARS and shown.startswith("[{'name': 'www") and shown.endswith("…")


def test_a_short_value_is_shown_whole() -> None:
    assert str(Problem("settings.app.replicas", 4, "must not exceed maxReplicas (3)")) == (
        "settings.app.replicas = 4: must not exceed maxReplicas (3)"
    )


def test_a_default_value_is_shown_when_the_user_wrote_another_key() -> None:
    (problem,) = problems_of(with_change("backup.rpoMinutes", 10))
    assert (problem.path, problem.value) == ("settings.backup.files.intervalMinutes", 15)


def test_a_managed_env_value_is_not_shown() -> None:
    value = secrets.token_urlsafe(12)
    (problem,) = problems_of(with_change("app.env", {"NEXTAUTH_SECRET": value}))
    assert problem.path == "settings.app.env.NEXTAUTH_SECRET" and value not in str(problem)


def test_every_problem_is_listed() -> None:
    config = with_change("monitoring.grafana", {"enabled": True, "hostPort": 9093})
    config["database"] = {"user": "postgres"}
    config["proxy"] = {"httpHostPort": 9090}
    paths = [problem.path for problem in problems_of(config)]
    assert paths == [
        "settings.proxy.httpHostPort",
        "settings.monitoring.grafana.hostPort",
        "settings.database.user",
    ]


def test_a_cross_field_problem_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors: list[plan_module.RecordingMonitor] = []

    class Watched(plan_module.RecordingMonitor):
        def __init__(self, mocks: Any, revealed: bool = False) -> None:
            super().__init__(mocks, revealed)
            monitors.append(self)

    monkeypatch.setattr(plan_module, "RecordingMonitor", Watched)
    config, _ = plan_module.stack_config("dev")
    settings = json.loads(config["1001-stories:settings"])
    settings["monitoring"]["grafana"] = {"enabled": True, "hostPort": 9090}
    with pytest.raises(ConfigError, match=r"settings\.monitoring\.grafana\.hostPort = 9090: "):
        plan_module.run_plan("dev", {**config, "1001-stories:settings": json.dumps(settings)}, [])
    (monitor,) = monitors
    assert monitor.recorded == []
