"""Postgres on Kubernetes: a CloudNativePG Cluster, its ScheduledBackup and its Pooler (PgBouncer).

The parameters are the Docker target's rendered postgresql.conf and pgbouncer.ini, less what the operator
manages itself. WAL archiving and base backups go to the stack's bucket through CloudNativePG's in-tree
Barman Cloud object store: one operator fewer to pin and run than the Barman Cloud plugin, at the price of a
move to the plugin when CloudNativePG drops the in-tree store (README: The Kubernetes target).
"""

from __future__ import annotations

from typing import Any

from configs.kubernetes.common import Manifest, container_resources, gib, manifest
from configs.render import image_versions, render_pgbouncer, render_postgres
from model.settings import Settings
from model.topology import POOLER, POSTGRES_CLUSTER, ROLES, container_topology

CNPG = "postgresql.cnpg.io/v1"
APP_SECRET = "postgres-app"  # kubernetes.io/basic-auth: the app's role
MONITOR_SECRET = "postgres-monitor"  # kubernetes.io/basic-auth: the monitor role
BACKUP_SECRET = "backup-s3"  # ACCESS_KEY_ID, ACCESS_SECRET_KEY of the bucket's writer
# Set by the operator (CloudNativePG docs, "PostgreSQL Configuration": fixed parameters and those it owns):
# listening, files, TLS, logging, archiving and replication are its own; it loads pg_stat_statements itself
# when a pg_stat_statements.* parameter is set.
OPERATOR_OWNED = {
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "hba_file",
    "shared_preload_libraries",
    "log_destination",
    "logging_collector",
    "log_line_prefix",
    "wal_level",
    "archive_mode",
    "archive_command",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_min_protocol_version",
}
# The pgbouncer.ini keys a Pooler accepts (spec.pgbouncer.parameters) that the Docker target sets.
POOLER_PARAMETERS = (
    "default_pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "max_client_conn",
    "server_idle_timeout",
    "ignore_startup_parameters",
)
COMPRESSION = {"zst": "zstd", "lz4": "lz4", "gz": "gzip", "bz2": "bzip2"}  # pgBackRest's names -> Barman's


def conf_values(text: str, section: str | None = None) -> dict[str, str]:
    """`key = value` lines of a rendered file (of one [section] when given), quotes removed."""
    values: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif line and not line.startswith(("#", ";")) and "=" in line and current == section:
            key, value = (part.strip() for part in line.split("=", 1))
            values[key] = value.strip("'")
    return values


def postgres_parameters(settings: Settings) -> dict[str, str]:
    topo = container_topology(settings)
    conf = render_postgres(settings, topo, image_versions(settings))["postgresql.conf"]
    return {key: value for key, value in conf_values(conf).items() if key not in OPERATOR_OWNED}


def pooler_parameters(settings: Settings) -> dict[str, str]:
    topo = container_topology(settings)
    ini = conf_values(render_pgbouncer(settings, topo, image_versions(settings))["pgbouncer.ini"], "pgbouncer")
    return {key: ini[key] for key in POOLER_PARAMETERS if key in ini}


def _object_store(settings: Settings, bucket: str) -> dict[str, Any]:
    s3 = settings.backup.s3
    credential = {"name": BACKUP_SECRET}
    store: dict[str, Any] = {
        "destinationPath": f"s3://{bucket}/cnpg/",
        "s3Credentials": {
            "accessKeyId": {**credential, "key": "ACCESS_KEY_ID"},
            "secretAccessKey": {**credential, "key": "ACCESS_SECRET_KEY"},
            "region": {**credential, "key": "REGION"},
        },
        "wal": {"compression": COMPRESSION[settings.backup.postgres.compress_type]},
        "data": {"compression": "bzip2" if settings.backup.postgres.compress_type == "bz2" else "gzip"},
    }
    if s3.endpoint:
        store["endpointURL"] = f"https://{s3.endpoint}"
    return store


def cluster(settings: Settings, namespace: str, bucket: str | None) -> Manifest:
    """`bucket`: the stack's backup bucket, or None without S3 (then no backups leave the cluster)."""
    k8s, db = settings.kubernetes, settings.database
    storage: dict[str, Any] = {"size": gib(k8s.database_storage_gb)}
    if k8s.storage_class:
        storage["storageClass"] = k8s.storage_class
    spec: dict[str, Any] = {
        "instances": k8s.database_instances,
        "imageName": k8s.postgres_image,
        "postgresql": {"parameters": postgres_parameters(settings)},
        "bootstrap": {
            "initdb": {
                "database": db.name,
                "owner": db.user,
                "secret": {"name": APP_SECRET},
                "postInitApplicationSQL": ["CREATE EXTENSION IF NOT EXISTS pg_stat_statements"],
            }
        },
        "managed": {
            "roles": [
                {
                    "name": ROLES["monitor"],
                    "ensure": "present",
                    "login": True,
                    "inRoles": ["pg_monitor"],
                    "passwordSecret": {"name": MONITOR_SECRET},
                }
            ]
        },
        "storage": storage,
        "resources": container_resources(db.resources),
        "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
    }
    if bucket is not None:
        retention = f"{settings.backup.postgres.retention_days}d"
        spec["backup"] = {"barmanObjectStore": _object_store(settings, bucket), "retentionPolicy": retention}
    return manifest(CNPG, "Cluster", POSTGRES_CLUSTER, namespace, "postgres", spec=spec)


def backup_schedule(hours: int) -> str:
    """CloudNativePG's six-field cron (seconds first) for a base backup every `hours`, at 03:00 when daily
    or weekly (Sunday)."""
    if hours % 168 == 0:
        return "0 0 3 * * 0"
    if hours % 24 == 0:
        return f"0 0 3 */{hours // 24} * *"
    return f"0 0 */{hours} * * *"


def scheduled_backup(settings: Settings, namespace: str) -> Manifest:
    spec = {
        "schedule": backup_schedule(settings.backup.postgres.full_interval_hours),
        "cluster": {"name": POSTGRES_CLUSTER},
        "method": "barmanObjectStore",
        "backupOwnerReference": "self",
        "immediate": True,
    }
    return manifest(CNPG, "ScheduledBackup", POSTGRES_CLUSTER, namespace, "postgres", spec=spec)


def pooler(settings: Settings, namespace: str) -> Manifest:
    """PgBouncer in front of the primary (CloudNativePG's auth_query user, TLS with the cluster's CA)."""
    pool = settings.pgbouncer
    spec = {
        "cluster": {"name": POSTGRES_CLUSTER},
        "instances": 2 if settings.kubernetes.database_instances > 1 else 1,
        "type": "rw",
        "pgbouncer": {"poolMode": pool.pool_mode, "parameters": pooler_parameters(settings)},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "pooler"}},
            "spec": {"containers": [{"name": "pgbouncer", "resources": container_resources(pool.resources)}]},
        },
    }
    return manifest(CNPG, "Pooler", POOLER, namespace, "pooler", spec=spec)
