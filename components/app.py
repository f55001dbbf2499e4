"""The 1001 Stories Next.js app: N replicas of a pinned (or locally built) image, reachable only
through nginx, talking to Postgres through PgBouncer and to Redis; the directories it writes as volumes
shared by every replica; and, once per deploy before any replica starts or rolls, two one-shot
containers: the data volumes' owner, and the schema migration (straight to Postgres)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

import pulumi
import pulumi_docker as docker

from components.container import (
    Attachment,
    HardenedContainer,
    Healthcheck,
    Mount,
    ServiceSpec,
    Upload,
    UploadDir,
    after_success,
)
from components.context import StackContext
from components.images_resource import pull
from configs import healthchecks
from model.images import parse_image
from model.settings import AppBuild, Resources, Settings
from model.topology import Topology, app_hostname
from model.tuning import created_app_replicas

APP_UID = "1001"  # nextjs:nodejs in the app's image
APP_CONFIG_DIR = "/etc/stories/app"
MIGRATION_CONFIG_DIR = "/etc/stories/app-migration"
VOLUMES_ROOT = "/stories-data"  # where the volume-owner step mounts the data volumes
VOLUME_OWNER_RESOURCES = Resources.model_validate({"memoryMb": 32, "memoryReservationMb": 16, "cpus": 0.1})
# The migration runs a Node.js tool (npx prisma) under a read-only root: npm's cache and logs go to the
# tmpfs (as the app's image sets it), and neither npm nor Prisma looks for updates (no route out).
# How long `pulumi up` waits for a new replica's healthcheck (its start period is 60 s) before it fails.
REPLICA_HEALTHY_SECONDS = 180
MIGRATION_ENV = {"NPM_CONFIG_CACHE": "/tmp/.npm", "NPM_CONFIG_UPDATE_NOTIFIER": "false", "CHECKPOINT_DISABLE": "1"}


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


def migration_database_url(settings: Settings, topo: Topology, password: str) -> str:
    """The migration's URL: straight to Postgres (Prisma Migrate takes a session-level advisory lock, which
    PgBouncer's transaction pool would hand to whichever client comes next), as the app's role, over TLS
    with Postgres's certificate and host name checked against the stack's CA."""
    db = settings.database
    return (
        f"postgresql://{db.user}:{quote(password, safe='')}@{topo.postgres_host}:{topo.postgres_port}/{db.name}"
        f"?sslmode=require&sslcert={MIGRATION_CONFIG_DIR}/database-ca.crt&sslaccept=strict"
    )


def redis_url(topo: Topology, password: str) -> str:
    return f"redis://default:{quote(password, safe='')}@{topo.redis_host}:{topo.redis_port}/0"


def migration_image_name(build: AppBuild) -> str:
    """`<repository>-migrate:<tag>` beside the app's own built image."""
    reference = parse_image(build.image_name)
    return f"{reference.repository}-migrate:{reference.tag}"


def _build(
    name: str, build: AppBuild, parent: pulumi.Resource, target: str | None, image_name: str
) -> pulumi.Output[str]:
    image = docker.Image(
        name,
        image_name=image_name,
        build=docker.DockerBuildArgs(
            context=build.context,
            dockerfile=build.dockerfile,
            target=target,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            cache_from=docker.CacheFromArgs(images=build.cache_from) if build.cache_from else None,
            platform="linux/amd64",
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    built: pulumi.Output[str] = image.image_name
    return built


class App(pulumi.ComponentResource):
    containers: list[docker.Container]
    data_volumes: dict[str, docker.Volume]  # data directory name -> its volume

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        secret_env: Mapping[str, pulumi.Input[str]],
        migrate_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:App", name, None, opts)
        stack, settings, topo, _, _, credentials = ctx
        app = settings.app
        if app.build is not None:
            image_ref = app.build.image_name
            image = _build("app-image", app.build, self, app.build.target, image_ref)
        else:
            assert app.image is not None  # the settings require exactly one of image and build
            image, image_ref = pull("app", app.image, self), app.image
        self._ctx = ctx
        self.data_volumes = {
            each.name: self._volume(each.name, stack, settings.host.retain_data_volumes) for each in app.data_dirs
        }
        # Nothing of a new deploy's replicas is created before both one-shots have succeeded.
        gates = [after_success("the app's data volume owner", self._volume_owner(image, image_ref))]
        if app.migration.enabled:
            migration = self._migration(image, image_ref, migrate_after)
            gates.append(after_success("the app's schema migration", migration))
        env: dict[str, pulumi.Input[str]] = {
            **app.env,
            **secret_env,
            "NODE_ENV": "production",
            "PORT": str(app.port),
            "HOSTNAME": "0.0.0.0",
            "NEXTAUTH_URL": settings.public_url,
            "NEXTAUTH_SECRET": credentials.nextauth_secret.value,
            "CRON_SECRET": credentials.cron_secret.value,
            "DATABASE_URL": pulumi.Output.secret(
                credentials.database_app.value.apply(lambda pw: database_url(settings, topo, pw))
            ),
            "REDIS_URL": pulumi.Output.secret(credentials.redis_app.value.apply(lambda pw: redis_url(topo, pw))),
        }
        shared = [Mount(each.path, volume=self.data_volumes[each.name]) for each in app.data_dirs]
        # One replica at a time: each waits for the one before it (healthy, when it runs) and, when an
        # update replaces them, the old ones serve until every new one is up (README "Deploys").
        self.containers = []
        for replica in range(1, created_app_replicas(settings) + 1):
            previous = self.containers[-1:]
            self.containers.append(self._replica(replica, image, image_ref, env, shared, [*gates, *previous]))
        self.register_outputs({"replicas": len(self.containers)})

    def _replica(
        self,
        replica: int,
        image: pulumi.Input[str],
        image_ref: str,
        env: Mapping[str, pulumi.Input[str]],
        shared: Sequence[Mount],
        depends_on: Sequence[pulumi.Input[pulumi.Resource]],
    ) -> docker.Container:
        stack, settings, _, _, networks, credentials = self._ctx
        app = settings.app
        started = replica <= app.replicas
        return HardenedContainer(
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
                start=started,
                wait_healthy_seconds=REPLICA_HEALTHY_SECONDS if started else None,
                rolling=True,
                depends_on=depends_on,
            ),
            pulumi.ResourceOptions(parent=self),
        ).container

    def _volume(self, purpose: str, stack: str, retain: bool) -> docker.Volume:
        return docker.Volume(
            f"app-{purpose}",
            name=f"{stack}-app-{purpose}",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=retain),
        )

    def _volume_owner(self, image: pulumi.Input[str], image_ref: str) -> docker.Container:
        """A new named volume takes the owner of the image's directory where it is mounted, and is root-owned
        0755 where the image has none (the app's image has no public/avatars and no private/exports): this
        one-shot hands every data volume's top directory to the app's user before a replica starts, in the
        app's own image, as root with CHOWN alone. It runs again when the image or the set of volumes
        changes (a new container); chown of the top directory only, which is quick and changes nothing
        the app wrote."""
        stack, settings = self._ctx.stack, self._ctx.settings
        targets = [f"{VOLUMES_ROOT}/{each.name}" for each in settings.app.data_dirs]
        owner = f"{APP_UID}:{APP_UID}"
        return HardenedContainer(
            "app-volumes",
            stack,
            ServiceSpec(
                service="app-volumes",
                image=image,
                image_ref=image_ref,
                resources=VOLUME_OWNER_RESOURCES,
                networks=[],
                healthcheck=None,
                no_healthcheck_reason="a one-shot: it changes the owner of the data volumes and exits",
                entrypoint=["chown"],
                command=[owner, *targets],
                user="0:0",
                cap_add={
                    "CHOWN": f"gives the app's data volumes to its user {owner} (root-owned where the image "
                    "has no such directory)"
                },
                mounts=[
                    Mount(f"{VOLUMES_ROOT}/{each.name}", volume=self.data_volumes[each.name])
                    for each in settings.app.data_dirs
                ],
                one_shot=True,
                timeout_seconds=60,
                role="volume-owner",
                extra_labels={"owner": owner},
            ),
            pulumi.ResourceOptions(parent=self),
        ).container

    def _migration(
        self, app_image: pulumi.Output[str], app_image_ref: str, after: Sequence[pulumi.Resource]
    ) -> docker.Container:
        stack, settings, topo, _, networks, credentials = self._ctx
        app, migration = settings.app, settings.app.migration
        if migration.image is not None and migration.image == app.image:
            image, image_ref = app_image, migration.image
        elif migration.image is not None:
            image, image_ref = pull("app-migration", migration.image, self), migration.image
        else:
            assert app.build is not None  # the settings require an image otherwise
            image_ref = migration_image_name(app.build)
            image = _build("app-migration-image", app.build, self, migration.build_target, image_ref)
        url = credentials.database_app.value.apply(lambda pw: migration_database_url(settings, topo, pw))
        return HardenedContainer(
            "app-migration",
            stack,
            ServiceSpec(
                service="app-migration",
                image=image,
                image_ref=image_ref,
                resources=migration.resources,
                # The data network alone: Postgres, nothing else of the stack, no route out.
                networks=[Attachment(networks.data, [])],
                healthcheck=None,
                no_healthcheck_reason="a one-shot: it applies the schema migrations and exits; its exit code counts",
                # `timeout` (coreutils, or busybox in Alpine images) stops a migration that hangs.
                entrypoint=["timeout", str(migration.timeout_seconds)],
                command=list(migration.command),
                env={**MIGRATION_ENV, "DATABASE_URL": pulumi.Output.secret(url)},
                user=f"{APP_UID}:{APP_UID}",
                upload_dirs=[
                    UploadDir(MIGRATION_CONFIG_DIR, [Upload("database-ca.crt", credentials.database_tls.ca_cert_pem)])
                ],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=256m"},
                one_shot=True,
                timeout_seconds=migration.timeout_seconds,
                role="one-shot",
                depends_on=list(after),
            ),
            pulumi.ResourceOptions(parent=self),
        ).container
