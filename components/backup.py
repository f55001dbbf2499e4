"""Backups: the backup-capable Postgres image, the repositories' environment, and the backup service
container that runs the schedules (backup/service.py) and the operator's command line (backup/cli.py).

pgBackRest archives WAL from inside the Postgres container and backs up from the backup container,
which shares Postgres's data (read-only) and socket; restic backs up the app's data directories (those
kept in backups), the TLS certificates and a Redis snapshot. Repositories: the S3 bucket (pgbackrest/
and restic/) when the stack has one, else the local backup volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from components.backup_bucket import BackupBucket
from components.container import Attachment, HardenedContainer, Healthcheck, Mount, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.credentials import Credentials
from components.images_resource import build_local
from configs.backup import render_backup_config
from configs.monitoring import BACKUP_METRICS_PORT
from configs.render import render_pgbackrest
from model.settings import Settings
from model.topology import S3_CA_FILE, Topology

POSTGRES_UID = "999"
IMAGE_SOURCES = (
    "backup/requirements.txt",
    "backup/__init__.py",
    "backup/config.py",
    "backup/tools.py",
    "backup/jobs.py",
    "backup/service.py",
    "backup/cli.py",
)
CONFIG_DIR = "/etc/stories/backup"


def backup_capable_postgres(settings: Settings, parent: pulumi.Resource) -> tuple[pulumi.Output[str], str]:
    """The pinned Postgres image with pgBackRest, restic and the backup command line added."""
    return build_local(
        "postgres-backup",
        "stories-postgres",
        "backup/Dockerfile",
        IMAGE_SOURCES,
        parent,
        build_args={"POSTGRES_IMAGE": settings.images.postgres},
    )


def repository_env(
    settings: Settings, credentials: Credentials, bucket: BackupBucket | None, restic: bool
) -> dict[str, pulumi.Input[str]]:
    """Secrets and the bucket's name, for pgBackRest (and restic): they never go into a config file."""
    env: dict[str, pulumi.Input[str]] = {"PGBACKREST_REPO1_CIPHER_PASS": credentials.pgbackrest_cipher.value}
    if restic:
        env["RESTIC_PASSWORD"] = credentials.restic_password.value
        env["STORIES_REDIS_BACKUP_PASSWORD"] = credentials.redis_backup.value
    if bucket is None:
        return env
    env["PGBACKREST_REPO1_S3_BUCKET"] = bucket.bucket.bucket
    if restic:
        env["STORIES_BACKUP_BUCKET"] = bucket.bucket.bucket
    if bucket.access_key_id is not None and bucket.secret_access_key is not None:
        env["PGBACKREST_REPO1_S3_KEY"] = bucket.access_key_id
        env["PGBACKREST_REPO1_S3_KEY_SECRET"] = bucket.secret_access_key
        if restic:
            env["AWS_ACCESS_KEY_ID"] = bucket.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = bucket.secret_access_key
    else:  # writer role: the host's own AWS credentials (instance profile)
        env["PGBACKREST_REPO1_S3_KEY_TYPE"] = "auto"
    return env


def pgbackrest_upload(settings: Settings, topo: Topology) -> UploadDir:
    """pgBackRest's config (and the S3 endpoint's CA, when it has a private one; restic reads it too)."""
    files = [Upload("pgbackrest.conf", render_pgbackrest(settings, topo)["pgbackrest.conf"])]
    if settings.backup.s3.ca_certificate_pem:
        files.append(Upload(S3_CA_FILE, settings.backup.s3.ca_certificate_pem))
    return UploadDir(topo.pgbackrest_config_dir, files)


class BackupService(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        ctx: StackContext,
        image: tuple[pulumi.Output[str], str],
        bucket: BackupBucket | None,
        shared: Mapping[str, Mount],
        data_volumes: Mapping[str, docker.Volume],
        work_volume: docker.Volume,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:BackupService", name, None, opts)
        stack, settings, topo, _, networks, credentials = ctx
        sources = dict(topo.backup_sources)
        mounts: Sequence[Mount] = [
            Mount(topo.backup_work_dir, volume=work_volume),
            # Read-write: `stories-backup restore --live` writes here, with Postgres stopped.
            shared["postgres-data"],
            Mount(topo.postgres_socket_dir, volume=shared["postgres-run"].volume),
            # Every backup source (topology.backup_sources): the app's data directories and the certificates.
            *(
                Mount(path, volume=data_volumes[name] if name in data_volumes else shared[name].volume, read_only=True)
                for name, path in sources.items()
            ),
            Mount(topo.backup_redis_dir, volume=shared["redis-data"].volume, read_only=True),
        ]
        config = render_backup_config(settings, topo, stack)
        metrics = f"http://127.0.0.1:{BACKUP_METRICS_PORT}/metrics"
        HardenedContainer(
            "backup",
            stack,
            ServiceSpec(
                service="backup",
                image=image[0],
                image_ref=image[1],
                resources=settings.backup.resources,
                networks=[
                    Attachment(networks.monitoring, ["backup"]),
                    Attachment(networks.backend, ["backup"]),
                    *networks.egress_of("backup"),
                ],
                entrypoint=["stories-backup"],
                command=["--config", f"{CONFIG_DIR}/backup.json", "service"],
                env=repository_env(settings, credentials, bucket, restic=True),
                user=f"{POSTGRES_UID}:{POSTGRES_UID}",
                upload_dirs=[UploadDir(CONFIG_DIR, [Upload("backup.json", config)]), pgbackrest_upload(settings, topo)],
                mounts=mounts,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=256m"},
                healthcheck=Healthcheck(
                    [
                        "/opt/stories-backup/bin/python",
                        "-c",
                        f"import urllib.request; urllib.request.urlopen({metrics!r}, timeout=3)",
                    ],
                    start_period="5m",
                ),
                stop_timeout_seconds=120,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
