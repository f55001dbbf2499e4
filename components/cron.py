"""The app's scheduled calls: a small service built from this repository (cron/Dockerfile) that calls each
of the app's cron routes on its schedule with the stack's CRON_SECRET as a bearer token, on the app network
(the app by its alias), and exports each call's outcome for Prometheus on the monitoring network."""

from __future__ import annotations

import pulumi

from components.container import Attachment, HardenedContainer, Healthcheck, ServiceSpec, Upload, UploadDir
from components.context import StackContext
from components.images_resource import build_local
from configs.cron import CRON_UID, render_cron_config
from configs.monitoring import CRON_METRICS_PORT

IMAGE_SOURCES = (
    "cron/requirements.txt",
    "cron/__init__.py",
    "cron/service.py",
    "model/__init__.py",
    "model/schedule.py",
)
CONFIG_DIR = "/etc/stories/cron"


class Cron(pulumi.ComponentResource):
    def __init__(self, name: str, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:platform:Cron", name, None, opts)
        stack, settings, _, _, networks, credentials = ctx
        image, reference = build_local("cron", "stories-cron", "cron/Dockerfile", IMAGE_SOURCES, self)
        metrics = f"http://127.0.0.1:{CRON_METRICS_PORT}/metrics"
        self.container = HardenedContainer(
            "cron",
            stack,
            ServiceSpec(
                service="cron",
                image=image,
                image_ref=reference,
                resources=settings.cron.resources,
                networks=[Attachment(networks.app, ["cron"]), Attachment(networks.monitoring, ["cron"])],
                command=["--config", f"{CONFIG_DIR}/cron.json"],
                env={"CRON_SECRET": credentials.cron_secret.value},
                user=f"{CRON_UID}:{CRON_UID}",
                upload_dirs=[UploadDir(CONFIG_DIR, [Upload("cron.json", render_cron_config(settings, stack))])],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                healthcheck=Healthcheck(
                    ["python", "-c", f"import urllib.request; urllib.request.urlopen({metrics!r}, timeout=3)"]
                ),
                stop_timeout_seconds=10,
            ),
            pulumi.ResourceOptions(parent=self),
        ).container
        self.register_outputs({})
