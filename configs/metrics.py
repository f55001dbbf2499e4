"""Every metric name that the alert rules and dashboards may use, with where it comes from.

These are the lists, one per target (METRICS: Docker, KUBERNETES_METRICS): a test parses every rule and
dashboard query and fails on a name not in its target's list. Add a metric here only with its source, and only
if that source is deployed by the stack.
"""

from __future__ import annotations

import re
from typing import Literal

Source = Literal[
    "prometheus",
    "node-exporter",
    "cadvisor",
    "postgres-exporter",
    "pgbouncer-exporter",
    "redis-exporter",
    "nginx-exporter",
    "blackbox-exporter",
    "recording-rule",
    "app-contract",
    "backup-contract",
    "scaler",
    "cron",
    "kube-state-metrics",
    "cloudnative-pg",
    "kubelet-cadvisor",
    "envoy",
]

SOURCES: dict[Source, str] = {
    "prometheus": "Prometheus itself: `up` for every scrape target, `ALERTS` for firing alerts",
    "node-exporter": "prom/node-exporter v1.8 (collectors cpu, meminfo, filesystem, loadavg)",
    "cadvisor": "cAdvisor v0.57 (per-container cgroup statistics)",
    "postgres-exporter": "prometheus-community postgres_exporter v0.16 (defaults, pg_stat_archiver too)",
    "pgbouncer-exporter": "prometheus-community pgbouncer_exporter v0.10 (SHOW POOLS/STATS/DATABASES)",
    "redis-exporter": "oliver006 redis_exporter v1.66 (INFO)",
    "nginx-exporter": "nginx-prometheus-exporter 1.4 (stub_status)",
    "blackbox-exporter": "prom/blackbox-exporter v0.25 (http_2xx probe of /api/health)",
    "recording-rule": "this stack's recording rules (configs/monitoring.py)",
    "app-contract": "the app's future /api/metrics contract (README: Metric contract); absent until the app exports it",
    "backup-contract": "the backup service (backup/service.py, README: Backups)",
    "scaler": "the app scaler (scaler/service.py), when scaling is enabled",
    "cron": "the cron service (cron/service.py): the app's scheduled calls, when cron is enabled",
    "kube-state-metrics": "kube-state-metrics v2.15.0 (chart 5.30.1 of kube-prometheus-stack 69.8.2, on by default; "
    "docs/metrics/workload/{cronjob,job,pod}-metrics.md, internal/store/{cronjob,job}.go)",
    "cloudnative-pg": "CloudNativePG 1.27.0's instance exporter, scraped through the postgres PodMonitor (port "
    "`metrics`, 9187): pkg/management/postgres/webserver/metricserver/pg_collector.go and the default queries, "
    "config/manager/default-monitoring.yaml (`cnpg_<query>_<column>`)",
    "kubelet-cadvisor": "the kubelet's cAdvisor (/metrics/cadvisor), scraped by kube-prometheus-stack 69.8.2's kubelet "
    "ServiceMonitor less its values.yaml kubelet.serviceMonitor.cAdvisorMetricRelabelings drops (container_spec.*)",
    "envoy": "the Envoy proxies of Envoy Gateway v1.8.3 (port `metrics`, 19001, /stats/prometheus: "
    "internal/infrastructure/kubernetes/proxy/resource.go), scraped through the gateway PodMonitor",
}

METRICS: dict[str, Source] = {
    "up": "prometheus",
    "ALERTS": "prometheus",
    "node_cpu_seconds_total": "node-exporter",
    "node_memory_MemAvailable_bytes": "node-exporter",
    "node_memory_MemTotal_bytes": "node-exporter",
    "node_filesystem_avail_bytes": "node-exporter",
    "node_filesystem_size_bytes": "node-exporter",
    "node_load1": "node-exporter",
    "container_cpu_usage_seconds_total": "cadvisor",
    "container_spec_cpu_quota": "cadvisor",
    "container_spec_cpu_period": "cadvisor",
    "container_memory_working_set_bytes": "cadvisor",
    "container_spec_memory_limit_bytes": "cadvisor",
    "pg_up": "postgres-exporter",
    "pg_stat_database_numbackends": "postgres-exporter",
    "pg_stat_database_xact_commit": "postgres-exporter",
    "pg_stat_database_xact_rollback": "postgres-exporter",
    "pg_stat_database_deadlocks": "postgres-exporter",
    "pg_settings_max_connections": "postgres-exporter",
    "pg_database_size_bytes": "postgres-exporter",
    "pg_stat_archiver_last_archive_age": "postgres-exporter",
    "pgbouncer_up": "pgbouncer-exporter",
    "pgbouncer_pools_client_active_connections": "pgbouncer-exporter",
    "pgbouncer_pools_client_waiting_connections": "pgbouncer-exporter",
    "pgbouncer_pools_server_active_connections": "pgbouncer-exporter",
    "pgbouncer_pools_server_idle_connections": "pgbouncer-exporter",
    "pgbouncer_pools_client_maxwait_seconds": "pgbouncer-exporter",
    "pgbouncer_databases_pool_size": "pgbouncer-exporter",
    "pgbouncer_databases_max_connections": "pgbouncer-exporter",
    "pgbouncer_databases_current_connections": "pgbouncer-exporter",
    "redis_up": "redis-exporter",
    "redis_memory_used_bytes": "redis-exporter",
    "redis_memory_max_bytes": "redis-exporter",
    "redis_evicted_keys_total": "redis-exporter",
    "redis_connected_clients": "redis-exporter",
    "redis_keyspace_hits_total": "redis-exporter",
    "redis_keyspace_misses_total": "redis-exporter",
    "nginx_up": "nginx-exporter",
    "nginx_connections_active": "nginx-exporter",
    "nginx_http_requests_total": "nginx-exporter",
    "probe_success": "blackbox-exporter",
    "probe_duration_seconds": "blackbox-exporter",
    "stories:db_connection_failure_ratio:5m": "recording-rule",
    "stories:active_sessions": "recording-rule",
    "stories:http_requests:rate1m": "recording-rule",
    "stories_active_sessions": "app-contract",
    "stories_backup_last_success_timestamp_seconds": "backup-contract",
    "stories_backup_last_run_success": "backup-contract",
    "stories_backup_expected_interval_seconds": "backup-contract",
    "stories_backup_wal_archive_failing": "backup-contract",
    "stories_backup_wal_last_archived_age_seconds": "backup-contract",
    "stories_scaler_desired_replicas": "scaler",
    "stories_scaler_running_replicas": "scaler",
    "stories_scaler_floor_replicas": "scaler",
    "stories_scaler_last_decision_timestamp_seconds": "scaler",
    "stories_scaler_decisions_total": "scaler",
    "stories_scaler_errors_total": "scaler",
    "stories_cron_last_success_timestamp_seconds": "cron",
    "stories_cron_last_run_success": "cron",
    "stories_cron_last_duration_seconds": "cron",
    "stories_cron_expected_interval_seconds": "cron",
    "stories_cron_calls_total": "cron",
}

# What a Kubernetes stack's Prometheus (kube-prometheus-stack 69.8.2) has: its own `up` and `ALERTS`, its
# node exporter (prometheus-node-exporter chart 4.44.1, node_exporter 1.9.0, the same names), kube-state-metrics,
# the kubelet's cAdvisor, CloudNativePG's exporter and the Envoy proxies. cAdvisor's limits are not among them:
# the chart's kubelet ServiceMonitor drops `container_spec.*` (values.yaml
# kubelet.serviceMonitor.cAdvisorMetricRelabelings); kube-state-metrics has the limits from the pods' specs
# instead. The app's contract is scraped by its PodMonitor where it sets app.metricsPath (as on Docker); the
# backup, scaler and cron services, postgres_exporter, the PgBouncer and nginx exporters and the blackbox
# exporter exist on the Docker target only.
KUBERNETES_SHARED: frozenset[Source] = frozenset(("prometheus", "node-exporter", "app-contract"))
KUBERNETES_METRICS: dict[str, Source] = {
    **{name: source for name, source in METRICS.items() if source in KUBERNETES_SHARED},
    "kube_cronjob_created": "kube-state-metrics",
    "kube_cronjob_status_last_successful_time": "kube-state-metrics",  # EXPERIMENTAL, served by default
    "kube_job_status_start_time": "kube-state-metrics",
    "kube_job_failed": "kube-state-metrics",  # {condition="true|false|unknown"}, while the Job has a Failed condition
    "kube_job_owner": "kube-state-metrics",  # {owner_kind, owner_name, owner_is_controller}
    "kube_pod_created": "kube-state-metrics",
    "kube_pod_container_status_ready": "kube-state-metrics",  # {container, pod, uid}
    "kube_pod_container_resource_limits": "kube-state-metrics",  # {resource="cpu" (cores)|"memory" (bytes), container}
    "kube_deployment_status_replicas_available": "kube-state-metrics",  # {deployment}
    "container_memory_working_set_bytes": "kubelet-cadvisor",  # {container, pod, namespace}
    "container_cpu_usage_seconds_total": "kubelet-cadvisor",
    # Each instance's ping of its PostgreSQL at every scrape, {cluster}: pg_collector.go (PostgreSQLUp).
    "cnpg_collector_up": "cloudnative-pg",
    # Set on the primary from the Cluster's status (lastSuccessfulBackup, lastFailedBackup: the in-tree Barman
    # Cloud store sets them, plugins do not), 0 on the replicas and until there is one; marked deprecated.
    "cnpg_collector_last_available_backup_timestamp": "cloudnative-pg",
    "cnpg_collector_last_failed_backup_timestamp": "cloudnative-pg",
    # pg_stat_archiver's times as epochs, -1 while null.
    "cnpg_pg_stat_archiver_last_archived_time": "cloudnative-pg",
    "cnpg_pg_stat_archiver_last_failed_time": "cloudnative-pg",
    # Each upstream cluster's (`httproute/<namespace>/<route>/rule/<index>`) response times, in milliseconds.
    "envoy_cluster_upstream_rq_time_bucket": "envoy",
}


_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\{(?:"(?:[^"\\]|\\.)*"|[^}"])*\}|\[[^\]]*\]'
    r"|[A-Za-z_:][A-Za-z0-9_:]*|\d[\w.]*|\S"
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
_KEYWORDS = _GROUPING | _AGGREGATIONS | {"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords, label names in
    matchers and grouping clauses, strings, numbers and durations are not metric names)."""
    tokens = _TOKEN.findall(expr)
    names: set[str] = set()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token in _GROUPING and following == "(":
            index = tokens.index(")", index)  # skip the label list
        elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and token not in _KEYWORDS and following != "(":
            names.add(token)
        index += 1
    return names
