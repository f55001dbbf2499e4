"""PostgreSQL 15: tuned from its container's memory, SCRAM only, pg_stat_statements, TLS on the data
network, and a first-start init that creates the app role and database and PgBouncer's lookup."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.backup import pgbackrest_upload, repository_env
from components.backup_bucket import BackupBucket
from components.container import (
    Attachment,
    HardenedContainer,
    Healthcheck,
    Mount,
    ServiceSpec,
    Upload,
    UploadDir,
    data_mount,
)
from components.context import StackContext
from configs import healthchecks
from configs.render import render_postgres

POSTGRES_UID = "999"
DATA_DIR = "/var/lib/postgresql/data"
INIT_DIR = "/docker-entrypoint-initdb.d"
POSTGRES_START_SECONDS = 300


class Database(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        image: tuple[pulumi.Output[str], str],
        bucket: BackupBucket | None,
        backup_work: docker.Volume,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Database", name, None, opts)
        stack, settings, topo, versions, networks, credentials = ctx
        files = render_postgres(settings, topo, versions)
        database_tls = credentials.database_tls
        self.data = data_mount(
            "postgres", stack, settings.database.data_host_path, settings.host.retain_data_volumes, self, DATA_DIR
        )
        # The socket directory is shared with the backup container (pgBackRest connects through it).
        socket = docker.Volume("postgres-run", name=f"{stack}-postgres-run", opts=pulumi.ResourceOptions(parent=self))
        self.socket = Mount(topo.postgres_socket_dir, volume=socket)
        mounts = [self.data, self.socket]
        if topo.backup_repo.kind == "posix":  # archive-push writes into the local repository
            mounts.append(Mount(topo.backup_work_dir, volume=backup_work))
        spec = ServiceSpec(
            service="postgres",
            image=image[0],
            image_ref=image[1],
            resources=settings.database.resources,
            networks=[Attachment(networks.data, ["postgres"]), *networks.egress_of("postgres")],
            command=["postgres", "-c", f"config_file={topo.postgres_config_dir}/postgresql.conf"],
            env={
                "PGDATA": topo.pg_data_dir,
                "POSTGRES_PASSWORD_FILE": f"{topo.postgres_secrets_dir}/superuser.password",
                **repository_env(settings, credentials, bucket, restic=False),
            },
            user=f"{POSTGRES_UID}:{POSTGRES_UID}",
            upload_dirs=[
                UploadDir(topo.postgres_config_dir, [Upload(n, files[n]) for n in ("postgresql.conf", "pg_hba.conf")]),
                UploadDir(INIT_DIR, [Upload("10-stories-init.sql", files["init.sql"])]),
                UploadDir(
                    topo.postgres_secrets_dir,
                    [
                        Upload("superuser.password", credentials.postgres_superuser.value, secret=True),
                        Upload("app.scram", credentials.database_app.scram_verifier, secret=True),
                        Upload("monitor.scram", credentials.database_monitor.scram_verifier, secret=True),
                        Upload("server.key", database_tls.server_key_pem, secret=True),
                        Upload("server.crt", database_tls.server_cert_pem),
                        Upload("ca.crt", database_tls.ca_cert_pem),
                    ],
                    owner=POSTGRES_UID,
                ),
                pgbackrest_upload(settings, topo),
            ],
            mounts=mounts,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            healthcheck=Healthcheck(healthchecks.postgres(settings, topo), interval="10s", start_period="60s"),
            # `pulumi up` creates what depends on the database (PgBouncer, the app's migration) once it
            # answers: a new cluster's first start (initdb, the init SQL) takes a while.
            wait_healthy_seconds=POSTGRES_START_SECONDS,
            # SIGINT is Postgres's "fast" shutdown: abort clients, checkpoint, exit cleanly.
            stop_signal="SIGINT",
            stop_timeout_seconds=90,
        )
        self.container = HardenedContainer("postgres", stack, spec, pulumi.ResourceOptions(parent=self)).container
        self.register_outputs({"container": self.container.name})
