"""The app's data directories backed up on Kubernetes as the Docker target's backup service does it
(backup/jobs.py): restic to the stack's bucket, tag `files`, host the stack's name, the same paths
(topology.backup_sources), every `backup.files.intervalMinutes`, snapshots kept `backup.files.retentionDays`
(forget --keep-within, prune), and a check reading `backup.files.verifyReadDataPercent` of the data every
`backup.verifyIntervalHours`. Each is a CronJob of the pinned restic image (kubernetes.resticImage), run as the
app's user with the data directories' claims mounted read-only; the bucket's writer keys and the
repository's password come from Secrets. Postgres has its own (CloudNativePG's Barman Cloud backups)."""

from __future__ import annotations

import shlex
from typing import Any

from configs.kubernetes.app import APP_UID, data_claim
from configs.kubernetes.common import HARDENED, Manifest, container_resources, pod_security, scheduled_job, secret_env
from configs.kubernetes.postgres import BACKUP_SECRET
from model.settings import RESERVED_DATA_DIR_NAMES, Settings
from model.topology import backup_sources, repo_layout

FILES_BACKUP = "files-backup"
FILES_CHECK = f"{FILES_BACKUP}-check"  # restic check: the Docker target's `verify` kind
CRON_JOBS = (FILES_BACKUP, FILES_CHECK)
RESTIC_SECRET = "restic"  # RESTIC_PASSWORD: the repository's key
TAG = "files"
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


def backup_script(stack: str, paths: list[str], days: int) -> str:
    """Create the repository when it has none (as the backup service's setup does), back up `paths`, forget
    what is older than `days` and prune."""
    ours = f"--tag {TAG} --host {shlex.quote(stack)}"
    return (
        "set -eu\n"
        "restic cat config >/dev/null 2>&1 || restic init --repository-version 2\n"
        f"restic backup {ours} --compression auto {shlex.join(paths)}\n"
        f"restic forget {ours} --keep-within {days}d --prune\n"
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


def _cron_job(settings: Settings, namespace: str, name: str, schedule: str, script: str, bucket: str) -> Manifest:
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    mounts += [{"name": f"data-{each}", "mountPath": path, "readOnly": True} for each, path in sources(settings)]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    volumes += [
        {"name": f"data-{each}", "persistentVolumeClaim": {"claimName": data_claim(each), "readOnly": True}}
        for each, _ in sources(settings)
    ]
    container = {
        "name": "restic",
        "image": settings.kubernetes.restic_image,
        "command": ["/bin/sh", "-c", script],
        "env": _env(settings, bucket),
        "resources": container_resources(settings.backup.resources),
        "securityContext": HARDENED,
        "volumeMounts": mounts,
    }
    pod = {
        # The app's user and group: it reads what the app wrote, and the claims keep their group.
        "securityContext": pod_security(APP_UID),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
    }
    job = {"backoffLimit": 2, "activeDeadlineSeconds": JOB_DEADLINE_SECONDS}
    return scheduled_job(name, namespace, FILES_BACKUP, pod, job, schedule=schedule)


def cron_job(settings: Settings, namespace: str, stack: str, name: str, bucket: str) -> Manifest:
    """One of CRON_JOBS: the backup or its check. `bucket`: the stack's backup bucket."""
    if name == FILES_BACKUP:
        files = settings.backup.files
        paths = [path for _, path in sources(settings)]
        schedule, script = every(files.interval_minutes), backup_script(stack, paths, files.retention_days)
    else:
        percent = settings.backup.files.verify_read_data_percent
        schedule, script = every(settings.backup.verify_interval_hours * 60), check_script(percent)
    return _cron_job(settings, namespace, name, schedule, script, bucket)
