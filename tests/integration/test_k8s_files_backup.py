"""The Kubernetes target's files backup scripts with the real restic (Debian's), on a local repository: the
first run creates the repository, later runs only add snapshots, the files come back identical, the check
passes; Redis's BGSAVE by its backup user against the real Redis with the rendered ACL, and its dump backed up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from configs.kubernetes.backup import REDIS_TAG, backup_script, bgsave_script, check_script
from harness.services import Redis

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


def bgsave(redis_server: Redis, password: str) -> subprocess.CompletedProcess[str]:
    script = bgsave_script("127.0.0.1", redis_server.env.topo.redis_port)
    env = {**os.environ, "REDISCLI_AUTH": password}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_redis_is_saved_by_its_backup_user_and_its_dump_backed_up(redis_server: Redis, tmp_path: Path) -> None:
    """The Redis backup's init container (BGSAVE as `backup`, waiting for LASTSAVE) against the rendered ACL,
    then its restic run on the dump; a refused password fails the run."""
    refused = bgsave(redis_server, "wrong")
    assert refused.returncode != 0 and "Redis refused LASTSAVE" in refused.stderr
    saved = bgsave(redis_server, redis_server.env.passwords["redis_backup"])
    assert saved.returncode == 0, saved.stderr
    dump = Path(redis_server.env.topo.redis_data_dir) / "dump.rdb"
    repository = tmp_path / "repo"
    run(backup_script("k8s", [str(dump)], 30, REDIS_TAG), repository)
    (snapshot,) = json.loads(run("restic snapshots --tag redis --host k8s --json", repository))
    assert snapshot["paths"] == [str(dump)]
    run(f"restic restore latest --tag redis --host k8s --target {tmp_path / 'restored'}", repository)
    assert (tmp_path / "restored" / dump.relative_to("/")).read_bytes()[:5] == b"REDIS"
