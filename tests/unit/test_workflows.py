"""The GitHub workflows pass actionlint (with shellcheck on their scripts when it is installed), and
say what the preview and deploy flows promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = Path(sys.executable).parent / "actionlint"


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), "actionlint comes with requirements-dev.txt"
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", "-oneline", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_workflows_pass_actionlint() -> None:
    """With shellcheck installed (.ci/run installs it), actionlint also checks every `run:` script."""
    result = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run([str(ACTIONLINT), "-no-color", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "nope" in result.stdout


def load(name: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return document


def test_preview_comments_per_stack_with_policies_and_an_offline_plan_without_secrets() -> None:
    preview = load("preview.yml")
    jobs = preview["jobs"]
    offline = yaml.safe_dump(jobs["offline-plan"])
    assert "make plan-diff" in offline and "secrets." not in offline
    stacks = [entry["stack"] for entry in jobs["preview"]["strategy"]["matrix"]["include"]]
    assert stacks == ["dev", "staging", "prod"]
    assert "matrix.stack" in jobs["preview"]["concurrency"]["group"]
    assert "pull_request.number" in jobs["preview"]["concurrency"]["group"]
    pulumi = next(step for step in jobs["preview"]["steps"] if str(step.get("uses", "")).startswith("pulumi/actions@"))
    assert pulumi["uses"] == "pulumi/actions@v6"
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["diff"] is True and pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert jobs["preview"]["permissions"]["id-token"] == "write"


def test_deploy_runs_staging_then_prod_behind_an_environment() -> None:
    deploy = load("deploy.yml")
    triggers: dict[str, Any] = deploy.get("on") or deploy[True]  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert jobs["prod"]["needs"] == "staging" and jobs["prod"]["environment"] == "production"
    for job in ("staging", "prod"):
        step = next(s for s in jobs[job]["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@"))
        assert step["with"]["command"] == "up" and step["with"]["stack-name"] == job
