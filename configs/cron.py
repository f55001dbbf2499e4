"""The cron service's configuration file (cron/service.py reads it): the app's scheduled calls."""

from __future__ import annotations

import json

from configs.monitoring import APP_ALIAS, CRON_METRICS_PORT
from model.settings import Settings

CRON_UID = 10002  # the cron service's user (cron/Dockerfile), and the app's scheduled calls' on Kubernetes
# A connection the app never accepted (no replica running yet, one just stopping) is tried again this long.
CONNECT_RETRY_SECONDS = 60


def app_base_url(settings: Settings) -> str:
    """Every running replica answers to the alias `app` on the app network (Docker's DNS)."""
    return f"http://{APP_ALIAS}:{settings.app.port}"


def render_cron_config(settings: Settings, stack: str, base_url: str | None = None) -> str:
    cron = settings.cron
    document = {
        "stack": stack,
        "base_url": base_url or app_base_url(settings),
        "timezone": settings.cron_timezone,
        "jobs": [job.model_dump(mode="json") for job in cron.jobs],
        "timeout_seconds": cron.timeout_seconds,
        "connect_retry_seconds": CONNECT_RETRY_SECONDS,
        "metrics_port": CRON_METRICS_PORT,
    }
    return json.dumps(document, indent=2) + "\n"
