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
# The parameters CloudNativePG 1.27.0 (the appVersion of chart 0.26.0) fixes or blocks: its admission webhook
# rejects a Cluster that sets one (pkg/postgres/configuration.go at v1.27.0, FixedConfigurationParameters, checked
# in internal/webhook/v1/cluster_webhook.go validateConfiguration). Listening, files, TLS files, logging,
# archiving and replication are the operator's; it loads pg_stat_statements itself when a pg_stat_statements.*
# parameter is set (ManagedExtensions, same file).
OPERATOR_FIXED = frozenset(
    (
        "allow_system_table_mods", "archive_cleanup_command", "archive_command", "archive_mode", "bonjour",
        "bonjour_name", "cluster_name", "config_file", "data_directory", "data_sync_retry", "event_source",
        "external_pid_file", "hba_file", "hot_standby", "ident_file", "jit_provider", "listen_addresses",
        "log_destination", "log_directory", "log_file_mode", "log_filename", "log_rotation_age", "log_rotation_size",
        "log_truncate_on_rotation", "logging_collector", "pg_failover_slots.primary_dsn",
        "pg_failover_slots.standby_slot_names", "port", "primary_conninfo", "primary_slot_name", "promote_trigger_file",
        "recovery_end_command", "recovery_min_apply_delay", "recovery_target", "recovery_target_action",
        "recovery_target_inclusive", "recovery_target_lsn", "recovery_target_name", "recovery_target_time",
        "recovery_target_timeline", "recovery_target_xid", "restart_after_crash", "restore_command",
        "shared_preload_libraries", "ssl", "ssl_ca_file", "ssl_cert_file", "ssl_crl_file", "ssl_dh_params_file",
        "ssl_ecdh_curve", "ssl_key_file", "ssl_passphrase_command", "ssl_passphrase_command_supports_reload",
        "ssl_prefer_server_ciphers", "stats_temp_directory", "synchronized_standby_slots", "synchronous_standby_names",
        "syslog_facility", "syslog_ident", "syslog_sequence_numbers", "syslog_split_messages", "temp_tablespaces",
        "unix_socket_directories", "unix_socket_group", "unix_socket_permissions",
    )
)  # fmt: skip
# Settable, but left at the operator's default on purpose (CnpgConfigurationSettings, same file): its TLS floor,
# 1.3, is stricter than the Docker target's 1.2, and its instance manager turns the log into JSON, where the Docker
# target's line prefix means nothing.
OPERATOR_DEFAULTS_KEPT = frozenset(("ssl_min_protocol_version", "log_line_prefix"))
# The pgbouncer.ini keys a Pooler accepts in spec.pgbouncer.parameters (CloudNativePG v1.27.0,
# internal/webhook/v1/pooler_webhook.go AllowedPgbouncerGenericConfigurationParameters); the rest (listening,
# authentication, TLS files) is the operator's. Its PgBouncer is 1.24.1 (pkg/versions DefaultPgbouncerImage).
POOLER_ALLOWED = frozenset(
    (
        "application_name_add_host", "autodb_idle_timeout", "cancel_wait_timeout", "client_idle_timeout",
        "client_login_timeout", "default_pool_size", "disable_pqexec", "dns_max_ttl", "dns_nxdomain_ttl",
        "idle_transaction_timeout", "ignore_startup_parameters", "listen_backlog", "log_connections",
        "log_disconnections", "log_pooler_errors", "log_stats", "max_client_conn", "max_db_connections",
        "max_packet_size", "max_prepared_statements", "max_user_connections", "min_pool_size", "pkt_buf",
        "query_timeout", "query_wait_timeout", "reserve_pool_size", "reserve_pool_timeout", "sbuf_loopcnt",
        "server_check_delay", "server_check_query", "server_connect_timeout", "server_fast_close",
        "server_idle_timeout", "server_lifetime", "server_login_retry", "server_reset_query",
        "server_reset_query_always", "server_round_robin", "server_tls_ciphers", "server_tls_protocols",
        "stats_period", "suspend_timeout", "tcp_defer_accept", "tcp_socket_buffer", "tcp_keepalive", "tcp_keepcnt",
        "tcp_keepidle", "tcp_keepintvl", "tcp_user_timeout", "track_extra_parameters", "verbose",
    )
)  # fmt: skip
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
    omitted = OPERATOR_FIXED | OPERATOR_DEFAULTS_KEPT
    return {key: value for key, value in conf_values(conf).items() if key not in omitted}


def pooler_parameters(settings: Settings) -> dict[str, str]:
    topo = container_topology(settings)
    ini = conf_values(render_pgbouncer(settings, topo, image_versions(settings))["pgbouncer.ini"], "pgbouncer")
    return {key: value for key, value in ini.items() if key in POOLER_ALLOWED}


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
