"""The 1001 Stories Next.js app: N replicas of a pinned (or locally built) image, reachable only
through nginx, talking to Postgres through PgBouncer and to Redis."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import pulumi
import pulumi_docker as docker

from components.container import Attachment, HardenedContainer, Healthcheck, Mount, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import pull
from configs import healthchecks
from model.settings import AppBuild, Settings
from model.topology import Topology, app_hostname
from model.tuning import created_app_replicas

APP_UID = "1001"


APP_CONFIG_DIR = "/etc/stories/app"


def database_url(settings: Settings, topo: Topology, password: str) -> str:
    """Prisma through PgBouncer: `pgbouncer=true` disables prepared statements for transaction mode;
    each replica's pool leaves room in PgBouncer's client limit for the others and for exporters;
    TLS to PgBouncer, whose certificate Prisma checks against the stack's CA (`sslcert`) only with
    `sslaccept=strict` (its default accepts any certificate)."""
    db = settings.database
    limit = max(1, settings.pgbouncer.max_client_conn // (settings.app.max_replicas + 1))
    return (
        f"postgresql://{db.user}:{quote(password, safe='')}@{topo.pgbouncer_host}:{topo.pgbouncer_port}/{db.name}"
        f"?pgbouncer=true&connection_limit={limit}&sslmode=require&sslcert={APP_CONFIG_DIR}/database-ca.crt"
        "&sslaccept=strict"
    )


def redis_url(topo: Topology, password: str) -> str:
    return f"redis://default:{quote(password, safe='')}@{topo.redis_host}:{topo.redis_port}/0"


def _build(build: AppBuild, parent: pulumi.Resource) -> pulumi.Output[str]:
    image = docker.Image(
        "app-image",
        image_name=build.image_name,
        build=docker.DockerBuildArgs(
            context=build.context,
            dockerfile=build.dockerfile,
            target=build.target,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            cache_from=docker.CacheFromArgs(images=build.cache_from) if build.cache_from else None,
            platform="linux/amd64",
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    image_name: pulumi.Output[str] = image.image_name
    return image_name


class App(pulumi.ComponentResource):
    containers: list[docker.Container]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        secret_env: Mapping[str, pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:App", name, None, opts)
        stack, settings, topo, _, networks, credentials = ctx
        app = settings.app
        if app.build is not None:
            image, image_ref = _build(app.build, self), app.build.image_name
        else:
            assert app.image is not None  # the settings require exactly one of image and build
            image, image_ref = pull("app", app.image, self), app.image
        env: dict[str, pulumi.Input[str]] = {
            **app.env,
            **secret_env,
            "NODE_ENV": "production",
            "PORT": str(app.port),
            "HOSTNAME": "0.0.0.0",
            "NEXTAUTH_URL": settings.public_url,
            "NEXTAUTH_SECRET": credentials.nextauth_secret.value,
            "DATABASE_URL": pulumi.Output.secret(
                credentials.database_app.value.apply(lambda pw: database_url(settings, topo, pw))
            ),
            "REDIS_URL": pulumi.Output.secret(credentials.redis_app.value.apply(lambda pw: redis_url(topo, pw))),
        }
        shared = [
            Mount(app.uploads_path, volume=self._volume("uploads", stack, settings.host.retain_data_volumes)),
            Mount(app.books_path, volume=self._volume("books", stack, settings.host.retain_data_volumes)),
        ]
        self.uploads_volume = shared[0].volume
        self.books_volume = shared[1].volume
        self.containers = [
            HardenedContainer(
                app_hostname(replica),
                stack,
                ServiceSpec(
                    service="app",
                    replica=replica,
                    image=image,
                    image_ref=image_ref,
                    resources=app.resources,
                    networks=[
                        Attachment(networks.app, ["app", app_hostname(replica)]),
                        Attachment(networks.backend, [app_hostname(replica)]),
                        *networks.egress_of("app"),
                    ],
                    env=env,
                    user=f"{APP_UID}:{APP_UID}",
                    upload_dirs=[
                        UploadDir(APP_CONFIG_DIR, [Upload("database-ca.crt", credentials.database_tls.ca_cert_pem)])
                    ],
                    mounts=shared,
                    tmpfs={
                        "/tmp": "rw,noexec,nosuid,size=256m",
                        app.tmp_path: "rw,noexec,nosuid,size=256m",
                        app.cache_path: "rw,noexec,nosuid,size=256m",
                    },
                    healthcheck=Healthcheck(healthchecks.app(settings), start_period="60s"),
                    stop_timeout_seconds=30,
                    # Replicas above the floor are the scaler's: created stopped, started on demand.
                    start=replica <= app.replicas,
                ),
                pulumi.ResourceOptions(parent=self),
            ).container
            for replica in range(1, created_app_replicas(settings) + 1)
        ]
        self.register_outputs({"replicas": len(self.containers)})

    def _volume(self, purpose: str, stack: str, retain: bool) -> docker.Volume:
        return docker.Volume(
            f"app-{purpose}",
            name=f"{stack}-app-{purpose}",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=retain),
        )
