"""The Kubernetes target's files backup against the Docker target's backup service: restic to the stack's
bucket with the same schedule, retention, check, tag, host and paths, the data directories read-only."""

from __future__ import annotations

import pytest

from backup.config import BackupJobConfig
from configs.backup import render_backup_config
from configs.kubernetes.backup import CRON_JOBS, FILES_BACKUP, every, sources
from model.topology import container_topology
from tests.unit.test_k8s_plan import one
from tools.plan import settings_for

SETTINGS = settings_for("k8s")
DOCKER = BackupJobConfig.model_validate_json(render_backup_config(SETTINGS, container_topology(SETTINGS), "k8s"))


@pytest.mark.parametrize(
    ("minutes", "schedule"),
    [(15, "*/15 * * * *"), (25, "*/25 * * * *"), (60, "0 */1 * * *"), (90, "0 */1 * * *"), (1440, "0 */24 * * *")],
)
def test_schedules_are_never_further_apart_than_the_interval(minutes: int, schedule: str) -> None:
    assert every(minutes) == schedule


def test_the_backup_runs_restic_as_the_backup_service_does() -> None:
    spec = one("CronJob", FILES_BACKUP)["spec"]
    assert spec["schedule"] == every(SETTINGS.backup.files.interval_minutes) == "*/15 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    script = container["command"][-1]
    paths = [path for name, path in DOCKER.sources.items() if name != "certificates"]
    assert f"restic backup --tag files --host k8s --compression auto {' '.join(paths)}\n" in script
    assert f"--keep-within {DOCKER.retention_days}d --prune" in script
    assert "exports" not in script  # not kept in backups, as on Docker
    env = {each["name"]: each for each in container["env"]}
    assert env["RESTIC_REPOSITORY"]["value"].startswith("s3:https://s3.eu-west-1.amazonaws.com/")
    assert env["RESTIC_REPOSITORY"]["value"].endswith(f"/{DOCKER.restic.location}")
    assert env["RESTIC_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "restic", "key": "RESTIC_PASSWORD"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "backup-s3"
    assert container["image"] == SETTINGS.kubernetes.restic_image


def test_the_data_directories_are_mounted_read_only_at_the_docker_paths() -> None:
    pod = one("CronJob", FILES_BACKUP)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    for name, path in sources(SETTINGS):
        assert mounts[path]["readOnly"] is True
        assert claims[mounts[path]["name"]] == {"claimName": f"app-{name}", "readOnly": True}
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 1001


def test_the_check_reads_the_share_of_the_data_the_settings_ask() -> None:
    spec = one("CronJob", CRON_JOBS[1])["spec"]
    assert spec["schedule"] == every(SETTINGS.backup.verify_interval_hours * 60)
    script = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert f"restic check --read-data-subset={DOCKER.verify_read_data_percent}%" in script


def test_the_backup_reaches_https_only() -> None:
    spec = one("NetworkPolicy", FILES_BACKUP)["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert spec["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}]
