"""The Kubernetes target's files backup against the Docker target's backup service: restic to the stack's
bucket with the same schedule, retention, check, tag, host and paths, the data directories read-only."""

from __future__ import annotations

import pytest

from backup.config import BackupJobConfig
from configs.backup import render_backup_config
from configs.kubernetes.backup import CRON_JOBS, FILES_BACKUP, REDIS_BACKUP, every, sources
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


def test_redis_is_backed_up_as_the_docker_redis_kind_on_its_node() -> None:
    """BGSAVE by the `backup` ACL user first, then restic of dump.rdb at the Docker path with tag `redis`, on
    the Redis pod's node (its claim is ReadWriteOnce), mounted read-only, as Redis's user."""
    spec = one("CronJob", REDIS_BACKUP)["spec"]
    assert spec["schedule"] == every(SETTINGS.backup.files.interval_minutes)
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == SETTINGS.images.redis and "--user backup" in init["command"][-1]
    (password,) = init["env"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "redis-acl", "key": "backup-password"}
    (container,) = pod["containers"]
    dump = f"{DOCKER.redis_dir}/dump.rdb"
    assert f"restic backup --tag redis --host k8s --compression auto {dump}\n" in container["command"][-1]
    assert f"restic forget --tag redis --host k8s --keep-within {DOCKER.retention_days}d" in container["command"][-1]
    assert {"name": "data-redis-0", "mountPath": DOCKER.redis_dir, "readOnly": True} in container["volumeMounts"]
    assert {"name": "data-redis-0", "persistentVolumeClaim": {"claimName": "data-redis-0", "readOnly": True}} in pod[
        "volumes"
    ]
    (affinity,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity == {
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    assert pod["securityContext"]["runAsUser"] == 999


def test_only_the_redis_backup_reaches_redis_besides_the_app() -> None:
    (clients, _) = one("NetworkPolicy", "redis")["spec"]["ingress"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": REDIS_BACKUP}}} in clients["from"]
    egress = one("NetworkPolicy", REDIS_BACKUP)["spec"]["egress"]
    assert [rule["ports"] for rule in egress] == [
        [{"protocol": "TCP", "port": 443}],
        [{"protocol": "TCP", "port": 6379}],
    ]
