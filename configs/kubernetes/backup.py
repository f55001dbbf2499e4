"""The app's data directories backed up on Kubernetes as the Docker target's backup service does it
(backup/jobs.py): restic to the stack's bucket, tag `files`, host the stack's name, the same paths
(topology.backup_sources), every `backup.files.intervalMinutes`, snapshots kept `backup.files.retentionDays`
(forget --keep-within, prune), and a check reading `backup.files.verifyReadDataPercent` of the data every
`backup.verifyIntervalHours`. Each is a CronJob of the pinned restic image (kubernetes.resticImage), run as the
app's user with the data directories' claims mounted read-only; the bucket's writer keys and the
repository's password come from Secrets. Postgres has its own (CloudNativePG's Barman Cloud backups).

Redis's dump is backed up as the Docker target's `redis` kind (backup/jobs.py backup_redis): BGSAVE by the ACL
user `backup` (ping, bgsave, lastsave only), wait until LASTSAVE moves, then restic of `dump.rdb` at the Docker
path with tag `redis`, every `backup.files.intervalMinutes`. Its claim is ReadWriteOnce, which a pod on another
node cannot mount: the CronJob's pod must run on the Redis pod's node (pod affinity) and mounts the claim
read-only there; a pod that cannot be placed leaves the backup late, which BackupLate reports."""

from __future__ import annotations

import shlex
from typing import Any

from configs.kubernetes.app import APP_UID, data_claim
from configs.kubernetes.common import (
    HARDENED,
    Manifest,
    container_resources,
    pod_security,
    scheduled_job,
    secret_env,
    selector,
)
from configs.kubernetes.postgres import BACKUP_SECRET
from configs.kubernetes.redis import ACL_SECRET, REDIS, REDIS_UID
from model.settings import RESERVED_DATA_DIR_NAMES, Settings
from model.topology import REDIS_PORT, backup_sources, container_topology, repo_layout

FILES_BACKUP = "files-backup"
FILES_CHECK = f"{FILES_BACKUP}-check"  # restic check: the Docker target's `verify` kind
REDIS_BACKUP = "redis-backup"
CRON_JOBS = (FILES_BACKUP, FILES_CHECK, REDIS_BACKUP)
RESTIC_SECRET = "restic"  # RESTIC_PASSWORD: the repository's key
TAG = "files"
REDIS_TAG = "redis"
REDIS_CLAIM = f"data-{REDIS}-0"  # the StatefulSet's claim (volumeClaimTemplate `data`) of its one pod
BGSAVE_TIMEOUT_SECONDS = 600  # as backup/jobs.py backup_redis waits
JOB_DEADLINE_SECONDS = 6 * 3600  # the Docker target's restic timeout (backup/tools.py)


def every(minutes: int) -> str:
    """A cron schedule never further apart than `minutes`: each `minutes` past the hour below an hour (the
    hour's boundary shortens one gap), else each whole number of hours in it (at most a day)."""
    if minutes < 60:
        return f"*/{minutes} * * * *"
    return f"0 */{min(minutes // 60, 24)} * * *"


def sources(settings: Settings) -> list[tuple[str, str]]:
    """The data directories kept in backups, at the Docker target's paths (the same snapshot layout, so a
    snapshot of either target restores alike)."""
    return [(name, path) for name, path in backup_sources(settings) if name not in RESERVED_DATA_DIR_NAMES]


def repository(settings: Settings, bucket: str) -> str:
    return f"s3:https://{repo_layout(settings).s3_endpoint}/{bucket}/{repo_layout(settings).restic_location}"


def backup_script(stack: str, paths: list[str], days: int, tag: str = TAG) -> str:
    """Create the repository when it has none (as the backup service's setup does), back up `paths` with `tag`,
    forget what is older than `days` and prune."""
    ours = f"--tag {tag} --host {shlex.quote(stack)}"
    return (
        "set -eu\n"
        "restic cat config >/dev/null 2>&1 || restic init --repository-version 2\n"
        f"restic backup {ours} --compression auto {shlex.join(paths)}\n"
        f"restic forget {ours} --keep-within {days}d --prune\n"
    )


def bgsave_script(host: str, port: int) -> str:
    """BGSAVE as the ACL user `backup` (its password in REDISCLI_AUTH) and wait until LASTSAVE moves, failing on
    a refusal (redis-cli prints it and exits 0; after a failed AUTH it goes on as the default user) or after
    BGSAVE_TIMEOUT_SECONDS."""
    return (
        "set -eu\n"
        "cli() {\n"
        f'  answer=$(redis-cli --no-auth-warning -h {host} -p {port} --user backup "$@" 2>&1)\n'
        '  case "$answer" in\n'
        '    AUTH*|ERR*|NOAUTH*|WRONGPASS*|NOPERM*|"") echo "Redis refused $*: $answer" >&2; exit 1;;\n'
        "  esac\n"
        '  echo "$answer"\n'
        "}\n"
        "before=$(cli LASTSAVE)\n"
        "sleep 1  # LASTSAVE counts seconds: a save within the second of the last one would not move it\n"
        "cli BGSAVE\n"
        f"deadline=$(($(date +%s) + {BGSAVE_TIMEOUT_SECONDS}))\n"
        "while :; do\n"
        "  now=$(cli LASTSAVE)\n"
        '  [ "$now" -gt "$before" ] && break\n'
        '  if [ "$(date +%s)" -ge "$deadline" ]; then\n'
        f'    echo "Redis BGSAVE did not finish in {BGSAVE_TIMEOUT_SECONDS} s" >&2\n'
        "    exit 1\n"
        "  fi\n"
        "  sleep 1\n"
        "done\n"
    )


def check_script(percent: int) -> str:
    return f"set -eu\nrestic check --read-data-subset={percent}%\n"


def _env(settings: Settings, bucket: str) -> list[dict[str, Any]]:
    return [
        {"name": "RESTIC_REPOSITORY", "value": repository(settings, bucket)},
        {"name": "RESTIC_CACHE_DIR", "value": "/tmp/restic-cache"},
        secret_env("RESTIC_PASSWORD", RESTIC_SECRET, "RESTIC_PASSWORD"),
        secret_env("AWS_ACCESS_KEY_ID", BACKUP_SECRET, "ACCESS_KEY_ID"),
        secret_env("AWS_SECRET_ACCESS_KEY", BACKUP_SECRET, "ACCESS_SECRET_KEY"),
        secret_env("AWS_DEFAULT_REGION", BACKUP_SECRET, "REGION"),
    ]


def _restic_pod(settings: Settings, script: str, bucket: str, claims: dict[str, str], uid: int) -> dict[str, Any]:
    """restic running `script` with `claims` (claim -> path) mounted read-only, as `uid`."""
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    mounts += [{"name": claim, "mountPath": path, "readOnly": True} for claim, path in claims.items()]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    volumes += [{"name": claim, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}} for claim in claims]
    container = {
        "name": "restic",
        "image": settings.kubernetes.restic_image,
        "command": ["/bin/sh", "-c", script],
        "env": _env(settings, bucket),
        "resources": container_resources(settings.backup.resources),
        "securityContext": HARDENED,
        "volumeMounts": mounts,
    }
    return {
        "securityContext": pod_security(uid),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
    }


def _files_job(settings: Settings, namespace: str, name: str, schedule: str, script: str, bucket: str) -> Manifest:
    # The app's user and group: it reads what the app wrote, and the claims keep their group.
    claims = {data_claim(each): path for each, path in sources(settings)}
    pod = _restic_pod(settings, script, bucket, claims, APP_UID)
    job = {"backoffLimit": 2, "activeDeadlineSeconds": JOB_DEADLINE_SECONDS}
    return scheduled_job(name, namespace, FILES_BACKUP, pod, job, schedule=schedule)


def redis_job(settings: Settings, namespace: str, stack: str, bucket: str) -> Manifest:
    """BGSAVE in an init container of the Redis image, then restic of the dump, on the Redis pod's node."""
    topo = container_topology(settings)
    script = backup_script(
        stack, [f"{topo.backup_redis_dir}/dump.rdb"], settings.backup.files.retention_days, REDIS_TAG
    )
    pod = _restic_pod(settings, script, bucket, {REDIS_CLAIM: topo.backup_redis_dir}, REDIS_UID)
    password = secret_env("REDISCLI_AUTH", ACL_SECRET, "backup-password")
    pod["initContainers"] = [
        {
            "name": "bgsave",
            "image": settings.images.redis,
            "command": ["/bin/sh", "-c", bgsave_script(f"{REDIS}.{namespace}.svc", REDIS_PORT)],
            "env": [password],
            "resources": container_resources(settings.backup.resources),
            "securityContext": HARDENED,
        }
    ]
    redis_node = {"labelSelector": {"matchLabels": selector(REDIS)}, "topologyKey": "kubernetes.io/hostname"}
    pod["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [redis_node]}}
    job = {"backoffLimit": 2, "activeDeadlineSeconds": JOB_DEADLINE_SECONDS}
    schedule = every(settings.backup.files.interval_minutes)
    return scheduled_job(REDIS_BACKUP, namespace, REDIS_BACKUP, pod, job, schedule=schedule)


def cron_job(settings: Settings, namespace: str, stack: str, name: str, bucket: str) -> Manifest:
    """One of CRON_JOBS: the files backup, its check or Redis's backup. `bucket`: the stack's backup bucket."""
    if name == REDIS_BACKUP:
        return redis_job(settings, namespace, stack, bucket)
    if name == FILES_BACKUP:
        files = settings.backup.files
        paths = [path for _, path in sources(settings)]
        schedule, script = every(files.interval_minutes), backup_script(stack, paths, files.retention_days)
    else:
        percent = settings.backup.files.verify_read_data_percent
        schedule, script = every(settings.backup.verify_interval_hours * 60), check_script(percent)
    return _files_job(settings, namespace, name, schedule, script, bucket)
