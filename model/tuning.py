"""Values derived from the settings: Postgres tuning from its container memory, the connection budget,
and the inventory of containers the stack runs (for the host-size check)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from pydantic.alias_generators import to_snake

from model.settings import (
    EGRESS_PREFIX_LENGTH,
    NON_POOL_CONNECTIONS,
    SUPERUSER_RESERVED_CONNECTIONS,
    Resources,
    Settings,
)


@dataclass(frozen=True)
class PostgresTuning:
    shared_buffers_mb: int
    effective_cache_size_mb: int
    work_mem_mb: int
    maintenance_work_mem_mb: int
    max_connections: int


def required_max_connections(settings: Settings) -> int:
    """PgBouncer's server connections plus everything that connects directly."""
    return settings.pgbouncer.server_connections + SUPERUSER_RESERVED_CONNECTIONS + NON_POOL_CONNECTIONS


def postgres_tuning(settings: Settings) -> PostgresTuning:
    """shared_buffers 25% and effective_cache_size 75% of the container's memory (the guide's rule)."""
    memory_mb = settings.database.resources.memory_mb
    return PostgresTuning(
        shared_buffers_mb=memory_mb // 4,
        effective_cache_size_mb=memory_mb * 3 // 4,
        work_mem_mb=settings.database.work_mem_mb,
        maintenance_work_mem_mb=max(16, memory_mb // 16),
        max_connections=settings.database.max_connections or required_max_connections(settings),
    )


def created_app_replicas(settings: Settings) -> int:
    """App containers the stack creates: all maxReplicas when the scaler may start them, else replicas."""
    return settings.app.max_replicas if settings.scaling.enabled else settings.app.replicas


EGRESS_ORDER = ("app", "postgres", "backup")


def egress_services(settings: Settings) -> dict[str, str]:
    """Services that must reach outside the host, and why; each gets an egress network of its own.
    (certbot reaches the ACME server from the public edge network; Alertmanager its receivers from
    the monitoring network: both are networks with a route out already.)"""
    services = {"app": "e-mail, OAuth and the OpenAI API the app calls"}
    if settings.backup.s3.enabled:
        services["postgres"] = "archive_command pushes WAL to the S3 repository"
        services["backup"] = "pgBackRest and restic write to the S3 repositories"
    return services


def egress_subnet(settings: Settings, service: str) -> IPv4Network:
    """The /27 of `networks.egress` for `service`, fixed by the service's place in EGRESS_ORDER."""
    index = EGRESS_ORDER.index(service)
    return list(settings.networks.egress.subnets(new_prefix=EGRESS_PREFIX_LENGTH))[index]


@dataclass(frozen=True)
class Allotment:
    """A service's containers: the resources of each, how many, and the settings key they come from."""

    resources: Resources
    count: int
    key: str


def _allotment(settings: Settings, key: str, count: int = 1) -> Allotment:
    """The resources at `key` (camelCase, dotted, under `settings.`), `count` containers of them."""
    node: Any = settings
    for part in key.split("."):
        node = getattr(node, to_snake(part))
    return Allotment(node, count, key)


def container_budget(settings: Settings) -> dict[str, Allotment]:
    """Every long-running container of the stack, and the migration that runs beside them during a deploy:
    service -> allotment. The app counts at maxReplicas, since the host must hold the most the scaler may run."""
    keys = {
        "postgres": "database.resources",
        "pgbouncer": "pgbouncer.resources",
        "redis": "redis.resources",
        "app": "app.resources",
        "nginx": "proxy.resources",
        "backup": "backup.resources",
    }
    if settings.scaling.enabled:
        keys.update({"scaler": "scaling.resources", "socket-proxy": "scaling.resources"})
    if settings.cron.enabled:
        keys["cron"] = "cron.resources"
    if settings.app.migration.enabled:  # a one-shot, but it runs while everything else does
        keys["app-migration"] = "app.migration.resources"
    if settings.proxy.tls.mode == "letsencrypt":
        keys["certbot"] = "proxy.certbotResources"
    monitoring = settings.monitoring
    if monitoring.enabled:
        keys.update(
            {
                "prometheus": "monitoring.resources.prometheus",
                "alertmanager": "monitoring.resources.alertmanager",
                "node-exporter": "monitoring.resources.nodeExporter",
                "postgres-exporter": "monitoring.resources.exporter",
                "pgbouncer-exporter": "monitoring.resources.exporter",
                "redis-exporter": "monitoring.resources.exporter",
                "nginx-exporter": "monitoring.resources.exporter",
                "blackbox-exporter": "monitoring.resources.exporter",
            }
        )
        if monitoring.cadvisor:
            keys["cadvisor"] = "monitoring.resources.cadvisor"
        if monitoring.grafana.enabled:
            keys["grafana"] = "monitoring.grafana.resources"
    counts = {"app": settings.app.max_replicas}
    return {service: _allotment(settings, key, counts.get(service, 1)) for service, key in keys.items()}
