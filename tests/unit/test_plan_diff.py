"""`make plan-diff`, on real git repositories made from this project."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.plan_diff import CONTAINER, ROLLING_NOTE, StackPlan, compare, flatten, markdown

ROOT = Path(__file__).resolve().parents[2]
E2E = pytest.mark.e2e


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh repository holding this project's tracked files (and working-tree changes), one commit."""
    repo = tmp_path_factory.mktemp("repo")
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", "base")
    return repo


def run_plan_diff(repo: Path, base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.plan_diff", "--base", base],
        cwd=repo,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def plan_diff(repo: Path, base: str = "main") -> str:
    result = run_plan_diff(repo, base)
    assert result.returncode == 0, result.stderr
    return result.stdout


@E2E
def test_no_change_is_no_changes_for_every_stack(repo: Path) -> None:
    summary = plan_diff(repo)
    for stack in ("dev", "staging", "prod"):
        assert f"### {stack}: no changes" in summary


@E2E
def test_one_value_names_the_resource_the_input_and_the_file_lines(repo: Path) -> None:
    stack_file = repo / "Pulumi.prod.yaml"
    original = stack_file.read_text()
    stack_file.write_text(
        original.replace("    monitoring:\n", "    pgbouncer:\n      defaultPoolSize: 24\n    monitoring:\n")
    )
    try:
        summary = plan_diff(repo)
    finally:
        stack_file.write_text(original)
    assert "### dev: no changes" in summary and "### staging: no changes" in summary
    prod = summary[summary.index("### prod") :]
    # The file changes in the config container; its new id replaces the service (and Postgres follows).
    assert "**docker:index/container:Container pgbouncer/pgbouncer-config**" in prod
    assert "| `uploads[/etc/stories/pgbouncer/pgbouncer.ini].content` |" in prod
    assert "**docker:index/container:Container pgbouncer/pgbouncer**" in prod
    assert "| `labels[org.1001stories.config].value` |" in prod
    assert "-default_pool_size = 20\n+default_pool_size = 24" in prod
    assert "-max_db_connections = 25\n+max_db_connections = 29" in prod
    assert "<code>pgbouncer/pgbouncer.ini</code>" in prod
    assert "\n-max_connections = 40\n" in prod and "\n+max_connections = 44\n" in prod  # Postgres follows the pool


@E2E
def test_bad_base_ref_is_one_clear_message(repo: Path) -> None:
    result = run_plan_diff(repo, "no-such-ref")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("BASE = 'no-such-ref': not a git ref here")


def test_secrets_never_show_and_resources_added_or_removed() -> None:
    base = StackPlan({"t a": {"envs": ["A=1", "TOKEN=[secret]"]}, "t gone": {}}, {"x/f.conf": "a\n"})
    head = StackPlan({"t a": {"envs": ["A=2", "TOKEN=[secret]"]}, "t new": {}}, {"x/f.conf": "a\n"})
    diff = compare("prod", base, head)
    assert diff.added == ["t new"] and diff.removed == ["t gone"]
    assert diff.changed == {"t a": [("envs[0]", "A=1", "A=2")]}
    assert not diff.files
    assert "[secret]" not in markdown([diff], "main").replace("TOKEN=[secret]", "")


def container(name: str, labels: dict[str, str], **inputs: Any) -> tuple[str, dict[str, Any]]:
    listed = [{"label": f"org.1001stories.{key}", "value": value} for key, value in labels.items()]
    return f"{CONTAINER} svc/{name}", {"labels": listed, **inputs}


def test_the_diff_says_what_restarts_what_rolls_and_what_reloads() -> None:
    check = {"interval": "10s", "startPeriod": "30s"}
    base = dict(
        [
            container("postgres", {"service": "postgres"}, image="a", stopTimeout=60, healthcheck=check),
            container("app-1", {"service": "app", "replica": "1"}, image="a"),
            container("app-2", {"service": "app", "replica": "2"}, image="a"),
            container("app-migration", {"service": "app"}, image="a", attach=True),
            container("nginx", {"service": "nginx"}, image="n"),
            container("nginx-config", {"service": "nginx", "role": "config"}, uploads=[{"file": "/c", "content": "1"}]),
            container("redis", {"service": "redis"}, image="r"),
        ]
    )
    head = copy.deepcopy(base)
    for name in ("postgres", "app-1", "app-2", "app-migration"):
        head[f"{CONTAINER} svc/{name}"]["image"] = "b"
    head[f"{CONTAINER} svc/nginx-config"]["uploads"][0]["content"] = "2"
    notes = compare("prod", StackPlan(base, {}), StackPlan(head, {})).restarts
    assert notes == [
        ROLLING_NOTE,
        "app-migration: runs again, once, before the app's replicas",
        "nginx: reloads its new files, no restart",
        "postgres: restarts: down from its stop (up to 60 s) until its new container is healthy "
        "(checked every 10s, start period 30s)",
    ]
    assert "**What the running stack feels:**" in markdown(
        [compare("prod", StackPlan(base, {}), StackPlan(head, {}))], "m"
    )
    head[f"{CONTAINER} svc/nginx"]["image"] = "n2"  # nginx itself replaced: its files are no reload then
    notes = compare("prod", StackPlan(base, {}), StackPlan(head, {})).restarts
    assert "nginx: reloads its new files, no restart" not in notes
    assert "nginx: restarts: down from its stop (up to 10 s) until its new container runs" in notes


def test_keyed_lists_compare_by_key() -> None:
    flat = flatten({"uploads": [{"file": "/etc/a", "content": "x"}], "cmd": ["a", "b"]})
    assert flat == {"uploads[/etc/a].file": "/etc/a", "uploads[/etc/a].content": "x", "cmd[0]": "a", "cmd[1]": "b"}


@E2E
def test_a_base_whose_plan_tool_predates_stacks_is_planned_stack_by_stack(tmp_path: Path, repo: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(repo, old)
    plan_tool = old / "tools" / "plan.py"
    source = plan_tool.read_text()
    option = (
        '    parser.add_argument("--stacks", help="plan several stacks in one run (JSON for tools: make plan-diff)")\n'
    )
    assert option in source
    plan_tool.write_text(source.replace(option, "").replace("    if args.stacks:", "    if False:"))
    git(old, "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qam", "older plan tool")
    git(old, "tag", "older")
    plan_tool.write_text(source)  # the working tree has today's tool
    summary = plan_diff(old, base="older")
    for stack in ("dev", "staging", "prod"):
        assert f"### {stack}: no changes" in summary
