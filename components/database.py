"""PostgreSQL 15: tuned from its container's memory, SCRAM only, pg_stat_statements, TLS on the data
network, and a first-start init that creates the app role and database and PgBouncer's lookup."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import Attachment, HardenedContainer, Healthcheck, Mount, ServiceSpec, Upload, UploadDir
from components.credentials import Credentials
from components.images_resource import pull
from components.network import Networks
from components.settings import Settings
from configs import healthchecks
from configs.render import ServerVersions, render_postgres
from configs.topology import Topology

POSTGRES_UID = "999"
DATA_DIR = "/var/lib/postgresql/data"
INIT_DIR = "/docker-entrypoint-initdb.d"


def data_mount(
    name: str, stack: str, host_path: str | None, retain: bool, parent: pulumi.Resource, target: str
) -> Mount:
    """A service's data: the host path from config if one is set, else a named volume that by default
    survives the resource's deletion (a `pulumi destroy` must not take the students' data with it)."""
    if host_path:
        return Mount(target=target, host_path=host_path)
    volume = docker.Volume(
        f"{name}-data",
        name=f"{stack}-{name}-data",
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=retain),
    )
    return Mount(target=target, volume=volume)


class Database(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        stack: str,
        settings: Settings,
        topo: Topology,
        versions: ServerVersions,
        networks: Networks,
        credentials: Credentials,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Database", name, None, opts)
        files = render_postgres(settings, topo, versions)
        database_tls = credentials.database_tls
        spec = ServiceSpec(
            service="postgres",
            image=pull("postgres", settings.images.postgres, self),
            image_ref=settings.images.postgres,
            resources=settings.database.resources,
            networks=[Attachment(networks.data, ["postgres"])],
            command=["postgres", "-c", f"config_file={topo.postgres_config_dir}/postgresql.conf"],
            env={
                "PGDATA": f"{DATA_DIR}/pgdata",
                "POSTGRES_PASSWORD_FILE": f"{topo.postgres_secrets_dir}/superuser.password",
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
            ],
            mounts=[
                data_mount(
                    "postgres",
                    stack,
                    settings.database.data_host_path,
                    settings.host.retain_data_volumes,
                    self,
                    DATA_DIR,
                )
            ],
            tmpfs={"/var/run/postgresql": "rw,noexec,nosuid,size=16m,mode=1777", "/tmp": "rw,noexec,nosuid,size=64m"},
            healthcheck=Healthcheck(healthchecks.postgres(settings, topo), interval="10s", start_period="60s"),
            # SIGINT is Postgres's "fast" shutdown: abort clients, checkpoint, exit cleanly.
            stop_signal="SIGINT",
            stop_timeout_seconds=90,
        )
        self.container = HardenedContainer("postgres", stack, spec, pulumi.ResourceOptions(parent=self)).container
        self.register_outputs({"container": self.container.name})
