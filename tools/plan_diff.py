"""`make plan-diff BASE=<ref>`: the offline plan of every stack at a git ref and in the working tree,
compared: resources added, removed and changed, the inputs that changed (secrets are "[secret]" in
both plans, so they never show), and unified diffs of the rendered config files. Needs no secrets, no
Pulumi CLI and no credentials, so it also runs for pull requests from forks.

    python -m tools.plan_diff --base origin/main [--stacks dev,staging,prod]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")
# List entries that have a natural key: compare them by it instead of by position.
LIST_KEYS = {
    "uploads": "file",
    "volumes": "containerPath",
    "networksAdvanced": "name",
    "labels": "label",
    "ports": "internal",
    "rules": "id",
}


@dataclass
class StackPlan:
    resources: dict[str, dict[str, Any]]
    files: dict[str, str]
    error: str | None = None


@dataclass
class StackDiff:
    stack: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.files or self.errors)


def resource_key(resource: dict[str, Any]) -> str:
    parent = f"{resource['parent']}/" if resource.get("parent") else ""
    return f"{resource['type']} {parent}{resource['name']}"


def _run_plan(tree: Path, python: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "tools.plan", "--format", "json", *arguments],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def _stack_plan(document: dict[str, Any], files: dict[str, str]) -> StackPlan:
    if document.get("missing"):
        return StackPlan({}, {})
    if "error" in document:
        return StackPlan({}, {}, error=str(document["error"]))
    return StackPlan({resource_key(r): r["inputs"] for r in document["resources"]}, files)


def plan_at(tree: Path, stack: str, python: str) -> StackPlan:
    """Run `tools.plan` of the tree (its own code and config) for one stack."""
    if not (tree / "tools" / "plan.py").exists() or not (tree / f"Pulumi.{stack}.yaml").exists():
        return StackPlan({}, {})
    with tempfile.TemporaryDirectory() as out:
        result = _run_plan(tree, python, "--stack", stack, "--out", out)
        if result.returncode != 0:
            return StackPlan({}, {}, error=result.stderr.strip() or result.stdout.strip())
        return _stack_plan(json.loads(result.stdout), _files(Path(out)))


def plan_tree(tree: Path, stacks: list[str], python: str) -> dict[str, StackPlan]:
    """Every stack of a tree in one process; a tree whose plan tool predates `--stacks` is planned
    stack by stack."""
    if not (tree / "tools" / "plan.py").exists():
        return {stack: StackPlan({}, {}) for stack in stacks}
    with tempfile.TemporaryDirectory() as out:
        result = _run_plan(tree, python, "--stacks", ",".join(stacks), "--out", out)
        if result.returncode != 0 and "--stacks" in result.stderr:
            return {stack: plan_at(tree, stack, python) for stack in stacks}
        if result.returncode != 0:
            error = result.stderr.strip() or result.stdout.strip()
            return {stack: StackPlan({}, {}, error=error) for stack in stacks}
        documents = {document["stack"]: document for document in json.loads(result.stdout)["plans"]}
        return {stack: _stack_plan(documents[stack], _files(Path(out) / stack)) for stack in stacks}


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Input paths to leaf values; keyed lists use their key (`uploads[/etc/x.conf].content`)."""
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            result.update(flatten(item, f"{path}.{key}" if path else key))
        return result
    if isinstance(value, list) and value:
        key_field = LIST_KEYS.get(path.rsplit(".", 1)[-1])
        result = {}
        for index, item in enumerate(value):
            label = item.get(key_field, index) if key_field and isinstance(item, dict) else index
            result.update(flatten(item, f"{path}[{label}]"))
        return result
    return {path: value}


def compare(stack: str, base: StackPlan, head: StackPlan) -> StackDiff:
    diff = StackDiff(
        stack, errors=[f"{side}: {plan.error}" for side, plan in (("base", base), ("head", head)) if plan.error]
    )
    diff.added = sorted(set(head.resources) - set(base.resources))
    diff.removed = sorted(set(base.resources) - set(head.resources))
    for key in sorted(set(base.resources) & set(head.resources)):
        before, after = flatten(base.resources[key]), flatten(head.resources[key])
        changes = [
            (path, before.get(path), after.get(path))
            for path in sorted(set(before) | set(after))
            if before.get(path) != after.get(path)
        ]
        if changes:
            diff.changed[key] = changes
    diff.restarts = what_restarts(diff, head)
    for name in sorted(set(base.files) | set(head.files)):
        old, new = base.files.get(name, ""), head.files.get(name, "")
        if old != new:
            lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}")
            diff.files[name] = "".join(lines)
    return diff


CONTAINER = "docker:index/container:Container"
DOCKER_STOP_DEFAULT_SECONDS = 10


def _labels(inputs: dict[str, Any]) -> dict[str, str]:
    return {str(item["label"]).rsplit(".", 1)[-1]: str(item["value"]) for item in inputs.get("labels") or []}


def what_restarts(diff: StackDiff, head: StackPlan) -> list[str]:
    """What the changed containers cost the running stack (README "Deploys"): the app's replicas roll, a
    service whose files changed and who reloads them does so, a one-shot runs again, and every other
    changed container is replaced, so its service is down from its stop until the new one is healthy."""
    changed = {key for key in diff.changed if key.startswith(CONTAINER)}
    notes: list[str] = []
    for key in sorted(changed):
        inputs = head.resources[key]
        labels, name = _labels(inputs), key.rsplit("/", 1)[-1]
        if labels.get("role") == "config":
            service = key.removesuffix("-config")
            if service not in changed and service in head.resources:
                notes.append(f"{labels['service']}: reloads its new files, no restart")
        elif "replica" in labels:
            notes.append(ROLLING_NOTE)
        elif inputs.get("attach"):
            notes.append(f"{name}: runs again, once, before the app's replicas")
        else:
            notes.append(f"{name}: restarts: {_downtime(inputs)}")
    return list(dict.fromkeys(notes))  # the replicas' note once


ROLLING_NOTE = "app: the replicas roll one at a time, each new one healthy before the next; no downtime"


def _downtime(inputs: dict[str, Any]) -> str:
    stop = inputs.get("stopTimeout") or DOCKER_STOP_DEFAULT_SECONDS
    check = inputs.get("healthcheck") or {}
    ready = (
        f"its new container is healthy (checked every {check.get('interval', '30s')}, "
        f"start period {check.get('startPeriod', '0s')})"
        if check
        else "its new container runs"
    )
    return f"down from its stop (up to {stop} s) until {ready}"


def _short(value: Any, limit: int = 60) -> str:
    text = "(absent)" if value is None else json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(diffs: list[StackDiff], base_ref: str) -> str:
    lines = [f"## Offline plan diff against `{base_ref}`", ""]
    for diff in diffs:
        if diff.empty:
            lines += [f"### {diff.stack}: no changes", ""]
            continue
        counts = f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed"
        lines += [f"### {diff.stack}: {counts}, {len(diff.files)} config file(s) changed", ""]
        lines += [f"- **error** {error}" for error in diff.errors]
        if diff.restarts:
            lines += ["**What the running stack feels:**", "", *(f"- {note}" for note in diff.restarts), ""]
        lines += [f"- added `{key}`" for key in diff.added]
        lines += [f"- removed `{key}`" for key in diff.removed]
        for key, changes in diff.changed.items():
            lines += ["", f"**{key}**", "", "| input | before | after |", "|---|---|---|"]
            lines += [f"| `{path}` | {_short(old)} | {_short(new)} |" for path, old, new in changes]
        for name, text in diff.files.items():
            lines += [
                "",
                f"<details><summary><code>{name}</code></summary>",
                "",
                "```diff",
                text.rstrip("\n"),
                "```",
                "",
                "</details>",
            ]
        lines.append("")
    return "\n".join(lines)


def base_tree(ref: str, directory: Path) -> None:
    """The files of `ref`, without touching the working tree or the index."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"BASE = {ref!r}: not a git ref here ({archive.stderr.decode().strip()})")
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make plan-diff", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True)
    parser.add_argument("--stacks", default=",".join(STACKS))
    args = parser.parse_args(argv)
    stacks = [stack for stack in args.stacks.split(",") if stack]
    with tempfile.TemporaryDirectory() as base_dir:
        base_tree(args.base, Path(base_dir))
        with ThreadPoolExecutor(max_workers=2) as pool:
            base = pool.submit(plan_tree, Path(base_dir), stacks, sys.executable)
            head = pool.submit(plan_tree, ROOT, stacks, sys.executable)
            diffs = [compare(stack, base.result()[stack], head.result()[stack]) for stack in stacks]
    print(markdown(diffs, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
