"""PgBouncer in transaction mode between the app and Postgres. Clients log in with SCRAM verifiers
looked up in Postgres; the console users' verifiers are its only userlist entries."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import Attachment, HardenedContainer, Healthcheck, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import pull
from configs import healthchecks
from configs.render import render_pgbouncer, render_pgbouncer_userlist
from model.topology import ROLES

PGBOUNCER_UID = "70"


class Pooler(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Pooler", name, None, opts)
        stack, settings, topo, versions, networks, credentials = ctx
        config_dir = topo.pgbouncer_config_dir
        userlist = pulumi.Output.all(
            credentials.pgbouncer_admin.scram_verifier, credentials.pgbouncer_stats.scram_verifier
        ).apply(
            lambda verifiers: render_pgbouncer_userlist(
                {ROLES["pgbouncer_admin"]: verifiers[0], ROLES["pgbouncer_stats"]: verifiers[1]}
            )
        )
        passfile = pulumi.Output.concat(
            "127.0.0.1:",
            str(topo.pgbouncer_port),
            ":pgbouncer:",
            ROLES["pgbouncer_stats"],
            ":",
            credentials.pgbouncer_stats.value,
            "\n",
        )
        database_tls = credentials.database_tls
        spec = ServiceSpec(
            service="pgbouncer",
            image=pull("pgbouncer", settings.images.pgbouncer, self),
            image_ref=settings.images.pgbouncer,
            resources=settings.pgbouncer.resources,
            networks=[Attachment(networks.backend, ["pgbouncer"]), Attachment(networks.data, ["pgbouncer"])],
            entrypoint=["/usr/bin/pgbouncer"],
            command=[f"{config_dir}/pgbouncer.ini"],
            env={"PGPASSFILE": f"{config_dir}/healthcheck.pgpass"},
            user=f"{PGBOUNCER_UID}:{PGBOUNCER_UID}",
            upload_dirs=[
                UploadDir(
                    config_dir,
                    [
                        Upload("pgbouncer.ini", render_pgbouncer(settings, topo, versions)["pgbouncer.ini"]),
                        Upload("userlist.txt", userlist, secret=True),
                        Upload("healthcheck.pgpass", passfile, secret=True),
                        Upload("ca.crt", database_tls.ca_cert_pem),
                        Upload("client.crt", database_tls.client_cert_pem),
                        Upload("client.key", database_tls.client_key_pem, secret=True),
                        Upload("server.crt", database_tls.pgbouncer_cert_pem),
                        Upload("server.key", database_tls.pgbouncer_key_pem, secret=True),
                    ],
                    owner=PGBOUNCER_UID,
                )
            ],
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            healthcheck=Healthcheck(healthchecks.pgbouncer(topo), interval="10s", start_period="20s"),
            # PgBouncer >= 1.23 treats SIGTERM as "wait for every client to leave"; SIGINT is the
            # immediate shutdown that Docker's stop expects.
            stop_signal="SIGINT",
            stop_timeout_seconds=30,
        )
        self.container = HardenedContainer("pgbouncer", stack, spec, pulumi.ResourceOptions(parent=self)).container
        self.register_outputs({"container": self.container.name})
