"""The Docker target's app scaler: a service built from this repository (scaler/Dockerfile) that reads
Prometheus and starts or stops app replicas above the floor, and the Docker API proxy it talks to,
which allows listing containers and starting or stopping them, nothing else. Only the two share the
control network; the scaler never sees the Docker socket."""

from __future__ import annotations

import pulumi

from components.container import Attachment, HardenedContainer, Healthcheck, Mount, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import build_local, pull
from configs.monitoring import SCALER_METRICS_PORT
from configs.scaler import render_scaler_config

IMAGE_SOURCES = (
    "scaler/requirements.txt",
    "scaler/__init__.py",
    "scaler/policy.py",
    "scaler/service.py",
    "model/__init__.py",
    "model/images.py",
    "model/schedule.py",
    "model/settings.py",
)
SCALER_UID = "10001"
PROXY_PORT = 2375
DOCKER_API = r"/v1\.[0-9]{1,2}"


def proxy_command() -> list[str]:
    return [
        "-loglevel=info",
        "-listenip=0.0.0.0",
        "-allowfrom=scaler",
        f"-allowGET=({DOCKER_API})?/(version|containers/json)",
        f"-allowPOST={DOCKER_API}/containers/[a-zA-Z0-9_.-]+/(start|stop)",
        "-allowhealthcheck",
        "-watchdoginterval=600",
        "-stoponwatchdog",
        "-shutdowngracetime=5",
    ]


class AppScaler(pulumi.ComponentResource):
    def __init__(self, name: str, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:platform:AppScaler", name, None, opts)
        stack, settings, _, _, networks, _ = ctx
        resources = settings.scaling.resources
        proxy = HardenedContainer(
            "socket-proxy",
            stack,
            ServiceSpec(
                service="socket-proxy",
                image=pull("socket-proxy", settings.images.socket_proxy, self),
                image_ref=settings.images.socket_proxy,
                resources=resources,
                networks=[Attachment(networks.control, ["socket-proxy"])],
                command=proxy_command(),
                user=f"65534:{settings.host.docker_socket_gid}",
                mounts=[Mount("/var/run/docker.sock", host_path="/var/run/docker.sock", read_only=True)],
                healthcheck=Healthcheck(["./healthcheck"], interval="30s", start_period="5s"),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        image, reference = build_local("scaler", "stories-scaler", "scaler/Dockerfile", IMAGE_SOURCES, self)
        config_dir = "/etc/stories/scaler"
        metrics = f"http://127.0.0.1:{SCALER_METRICS_PORT}/metrics"
        HardenedContainer(
            "scaler",
            stack,
            ServiceSpec(
                service="scaler",
                image=image,
                image_ref=reference,
                resources=resources,
                networks=[Attachment(networks.control, ["scaler"]), Attachment(networks.monitoring, ["scaler"])],
                command=["--config", f"{config_dir}/scaler.json"],
                user=f"{SCALER_UID}:{SCALER_UID}",
                upload_dirs=[UploadDir(config_dir, [Upload("scaler.json", render_scaler_config(settings, stack))])],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                healthcheck=Healthcheck(
                    ["python", "-c", f"import urllib.request; urllib.request.urlopen({metrics!r}, timeout=3)"]
                ),
                depends_on=[proxy],
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
