"""The Kubernetes target's files backup scripts with the real restic (Debian's), on a local repository: the
first run creates the repository, later runs only add snapshots, the files come back identical, the check
passes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from configs.kubernetes.backup import backup_script, check_script

pytestmark = pytest.mark.integration


def run(script: str, repository: Path) -> str:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD": "test-only"}
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_backup_twice_restore_and_check(tmp_path: Path) -> None:
    repository, sources = tmp_path / "repo", [tmp_path / "covers", tmp_path / "books"]
    for index, source in enumerate(sources):
        source.mkdir()
        (source / f"file-{index}.bin").write_bytes(os.urandom(4096))
    script = backup_script("k8s", [str(path) for path in sources], 30)
    run(script, repository)
    run(script, repository)  # the repository exists: no second init
    snapshots = json.loads(run("restic snapshots --tag files --host k8s --json", repository))
    assert [each["paths"] for each in snapshots] == [sorted(str(path) for path in sources)] * 2
    target = tmp_path / "restored"
    run(f"restic restore latest --tag files --host k8s --target {target}", repository)
    for source in sources:
        for each in source.iterdir():
            assert (target / each.relative_to("/")).read_bytes() == each.read_bytes()
    run(check_script(10), repository)
