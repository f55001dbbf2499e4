"""Redis: bounded memory with LRU eviction, ACL users with hashed passwords, persistence as configured."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import Attachment, HardenedContainer, Healthcheck, ServiceSpec, Upload, UploadDir, data_mount
from components.context import StackContext
from components.images_resource import pull
from configs import healthchecks
from configs.render import render_redis, render_redis_acl

REDIS_UID = "999"


class Cache(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Cache", name, None, opts)
        stack, settings, topo, versions, networks, credentials = ctx
        users = {
            "app": credentials.redis_app,
            "exporter": credentials.redis_exporter,
            "healthcheck": credentials.redis_healthcheck,
            "backup": credentials.redis_backup,
        }
        acl = pulumi.Output.all(**{user: password.redis_hash for user, password in users.items()}).apply(
            render_redis_acl
        )
        self.data = data_mount("redis", stack, None, settings.host.retain_data_volumes, self, topo.redis_data_dir)
        spec = ServiceSpec(
            service="redis",
            image=pull("redis", settings.images.redis, self),
            image_ref=settings.images.redis,
            resources=settings.redis.resources,
            networks=[Attachment(networks.backend, ["redis"])],
            command=["redis-server", f"{topo.redis_config_dir}/redis.conf"],
            env={"REDISCLI_AUTH": credentials.redis_healthcheck.value},
            user=f"{REDIS_UID}:1000",
            upload_dirs=[
                UploadDir(
                    topo.redis_config_dir,
                    [
                        Upload("redis.conf", render_redis(settings, topo, versions)["redis.conf"]),
                        Upload("users.acl", acl, secret=True),
                    ],
                    owner=REDIS_UID,
                )
            ],
            mounts=[self.data],
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            healthcheck=Healthcheck(healthchecks.redis(topo), interval="10s", start_period="10s"),
            stop_timeout_seconds=30,
        )
        self.container = HardenedContainer("redis", stack, spec, pulumi.ResourceOptions(parent=self)).container
        self.register_outputs({"container": self.container.name})
