"""Prometheus, Alertmanager, blackbox exporter and Grafana provisioning files, built as data and dumped as YAML
(the dashboards: configs/dashboards.py).

Alert rules are data (as in the Prometheus monitoring mixins): one `AlertRule` per guide threshold,
each with a severity and a human summary, each covered by `promtool test rules` in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from model.settings import Receiver, Settings

CONFIG_DIR = "/etc/stories"
BACKUP_METRICS_PORT = 9401
SCALER_METRICS_PORT = 9400
CRON_METRICS_PORT = 9402
PROMETHEUS_RULES_DIR = f"{CONFIG_DIR}/prometheus/rules"
GRAFANA_DASHBOARDS_DIR = f"{CONFIG_DIR}/grafana/dashboards"
GRAFANA_DATASOURCE_UID = "prometheus"  # the provisioned Prometheus data source, as every panel names it

# Scrape targets inside the monitoring network: job -> host:port.
EXPORTER_TARGETS = {
    "node": "node-exporter:9100",
    "cadvisor": "cadvisor:8080",
    "postgres": "postgres-exporter:9187",
    "pgbouncer": "pgbouncer-exporter:9127",
    "redis": "redis-exporter:9121",
    "nginx": "nginx-exporter:9113",
    "alertmanager": "alertmanager:9093",
}
BLACKBOX_TARGET = "blackbox-exporter:9115"
BLACKBOX_JOB = "blackbox-app"
ACTIVE_SESSIONS = "stories:active_sessions"  # the recording rule ActiveSessionsHigh reads
DB_CONNECTION_FAILURE_RATIO = "stories:db_connection_failure_ratio:5m"  # the one DatabaseConnectionFailures reads


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    def as_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0m":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "description": self.description}
        return rule


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str

    def as_rule(self) -> dict[str, Any]:
        return {"record": self.record, "expr": self.expr}


def recording_rules() -> list[RecordingRule]:
    return [
        # Share of the exporter's periodic connection attempts to Postgres that failed. The app has no
        # connection-error counter today; this is what the stack really measures.
        RecordingRule(DB_CONNECTION_FAILURE_RATIO, "1 - avg_over_time(pg_up[5m])"),
        # Active sessions from the app's metric contract when it exports it, else nginx's active
        # client connections as the nearest measured signal.
        RecordingRule(
            ACTIVE_SESSIONS,
            "sum(stories_active_sessions) or sum(nginx_connections_active)",
        ),
        RecordingRule("stories:http_requests:rate1m", "sum(rate(nginx_http_requests_total[1m]))"),
    ]


def alert_rules(settings: Settings) -> list[AlertRule]:
    """One rule per threshold of the guide (critical: down, DB failures, memory, disk; warning: CPU,
    response time, sessions, backup), and the app's scheduled calls."""
    t = settings.monitoring.alerts
    late = settings.backup.late_factor
    memory = t.memory_percent
    return [
        service_down(settings, "up"),
        app_health_check_failing(settings, f'probe_success{{job="{BLACKBOX_JOB}"}} == 0'),
        app_replicas_below_floor(
            settings,
            f'count(probe_success{{job="{BLACKBOX_JOB}"}} == 1)',
            "answer their health check",
            " A replica that exited or was removed is no longer probed at all.",
        ),
        AlertRule(
            "DatabaseConnectionFailures",
            f"{DB_CONNECTION_FAILURE_RATIO} * 100 > {t.db_connection_failure_percent:g}",
            "1m",
            "critical",
            "Connections to PostgreSQL are failing",
            f"More than {t.db_connection_failure_percent:g}% of connection attempts to PostgreSQL failed in the "
            "last 5 minutes ({{ $value | humanize }}%).",
        ),
        AlertRule(
            "HostMemoryHigh",
            f"(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100 > {memory:g}",
            "2m",
            "critical",
            f"Host memory above {memory:g}%",
            "Memory use on {{ $labels.instance }} is {{ $value | humanize }}%.",
        ),
        container_memory_high(
            settings,
            'container_memory_working_set_bytes{name!=""} / (container_spec_memory_limit_bytes{name!=""} > 0)',
        ),
        AlertRule(
            "DiskSpaceLow",
            'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs|ramfs"}'
            ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs|ramfs"}'
            f" * 100 < {t.disk_free_percent:g}",
            "5m",
            "critical",
            "Disk almost full on {{ $labels.mountpoint }}",
            "Only {{ $value | humanize }}% free on {{ $labels.mountpoint }}"
            f" (threshold {t.disk_free_percent:g}%).",
        ),
        AlertRule(
            "HostCpuHigh",
            f'(1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[5m]))) * 100 > {t.cpu_percent:g}',
            f"{t.cpu_for_minutes}m",
            "warning",
            f"Host CPU above {t.cpu_percent:g}% for {t.cpu_for_minutes} minutes",
            "CPU use on {{ $labels.instance }} is {{ $value | humanize }}%.",
        ),
        container_cpu_high(
            settings,
            'rate(container_cpu_usage_seconds_total{name!=""}[5m])'
            ' / (container_spec_cpu_quota{name!=""} / container_spec_cpu_period{name!=""})',
        ),
        slow_responses(
            settings,
            f'probe_duration_seconds{{job="{BLACKBOX_JOB}"}}',
            "/api/health on {{ $labels.instance }} took",
        ),
        AlertRule(
            "ActiveSessionsHigh",
            f"{ACTIVE_SESSIONS} > {t.active_sessions}",
            "5m",
            "warning",
            f"More than {t.active_sessions} active sessions",
            "{{ $value }} active sessions; consider more app replicas (see the scaler).",
        ),
        backup_failed("stories_backup_last_run_success == 0", "the backup container's log"),
        backup_late(
            "time() - stories_backup_last_success_timestamp_seconds"
            f" > {late:g} * stories_backup_expected_interval_seconds",
            late,
        ),
        *cron_alert_rules(settings),
        wal_archiving_failing("stories_backup_wal_archive_failing == 1"),
    ]


# The app's and the containers' alerts of both targets: each target's expression, one wording. The containers'
# expressions give each alert a `name` label (the container), the app's health check an `instance` label (the
# replica), which the texts name.


def app_health_check_failing(settings: Settings, failing: str) -> AlertRule:
    """`failing`: a series per replica whose health check fails."""
    down = f"{settings.monitoring.alerts.service_down_minutes}m"
    return AlertRule(
        "AppHealthCheckFailing",
        failing,
        down,
        "critical",
        "App replica {{ $labels.instance }} fails its health check",
        f"GET /api/health on {{{{ $labels.instance }}}} has failed for more than {down}.",
    )


def app_replicas_below_floor(settings: Settings, healthy: str, counted: str, note: str) -> AlertRule:
    """`healthy`: the number of healthy replicas (absent counts as none); `counted`: what makes one healthy;
    `note`: what the count misses."""
    replicas = settings.app.replicas
    return AlertRule(
        "AppReplicasBelowFloor",
        f"({healthy} or vector(0)) < {replicas}",
        f"{settings.monitoring.alerts.service_down_minutes}m",
        "critical",
        "Fewer healthy app replicas than app.replicas",
        f"{{{{ $value }}}} replicas {counted}; the stack always runs at least {replicas}.{note}",
    )


def container_memory_high(settings: Settings, used: str) -> AlertRule:
    """`used`: each container's memory working set as a fraction of its limit."""
    memory = settings.monitoring.alerts.memory_percent
    return AlertRule(
        "ContainerMemoryHigh",
        f"{used} * 100 > {memory:g}",
        "2m",
        "critical",
        "Container {{ $labels.name }} near its memory limit",
        f"{{{{ $labels.name }}}} uses {{{{ $value | humanize }}}}% of its memory limit (threshold {memory:g}%).",
    )


def container_cpu_high(settings: Settings, used: str) -> AlertRule:
    """`used`: each container's CPU use over 5 minutes as a fraction of its limit."""
    t = settings.monitoring.alerts
    return AlertRule(
        "ContainerCpuHigh",
        f"{used} * 100 > {t.cpu_percent:g}",
        f"{t.cpu_for_minutes}m",
        "warning",
        "Container {{ $labels.name }} near its CPU limit",
        f"{{{{ $labels.name }}}} uses {{{{ $value | humanize }}}}% of its CPU limit (threshold {t.cpu_percent:g}%).",
    )


def slow_responses(settings: Settings, seconds: str, took: str) -> AlertRule:
    """`seconds`: the response time watched; `took`: what it measures, as the text's subject."""
    limit = settings.monitoring.alerts.response_time_seconds
    return AlertRule(
        "SlowResponses",
        f"{seconds} > {limit:g}",
        "2m",
        "warning",
        f"App responses slower than {limit:g} s",
        f"{took} {{{{ $value | humanizeDuration }}}}.",
    )


# The backup alerts of both targets: each target's expression, one wording. The expressions give each alert
# a `kind` label (postgres, files, redis, verify), which the texts name.


def backup_failed(expr: str, log: str) -> AlertRule:
    """`log`: where the failed run's output is."""
    return AlertRule(
        "BackupFailed",
        expr,
        "0m",
        "warning",
        "Backup of {{ $labels.kind }} failed",
        f"The last {{{{ $labels.kind }}}} backup run failed; see {log}.",
    )


def backup_late(expr: str, late: float) -> AlertRule:
    """`expr`: the age of the last success where it exceeds `late` (backup.lateFactor) times the interval."""
    return AlertRule(
        "BackupLate",
        expr,
        "0m",
        "warning",
        "{{ $labels.kind }} backup is late",
        "The last successful {{ $labels.kind }} backup is {{ $value | humanize }} s old,"
        f" more than {late:g} times its schedule's interval.",
    )


def wal_archiving_failing(expr: str) -> AlertRule:
    return AlertRule(
        "WalArchivingFailing",
        expr,
        "5m",
        "warning",
        "PostgreSQL WAL archiving is failing",
        "pg_stat_archiver reports a failure newer than the last archived segment; the RPO is not being met.",
    )


def service_down(settings: Settings, up: str) -> AlertRule:
    """`up`: the selector of the scrape targets watched (a Kubernetes stack's: its namespace's)."""
    down = f"{settings.monitoring.alerts.service_down_minutes}m"
    return AlertRule(
        "ServiceDown",
        f"{up} == 0",
        down,
        "critical",
        "{{ $labels.job }} is down",
        f"Prometheus could not scrape {{{{ $labels.instance }}}} for more than {down}.",
    )


def cron_alert_rules(settings: Settings) -> list[AlertRule]:
    """The app's scheduled calls (the cron service), as the backup jobs: a failed last call, and a last
    success older than cron.lateFactor times the schedule's longest gap."""
    if not settings.cron.enabled:
        return []
    late = settings.cron.late_factor
    return [
        cron_call_failed("stories_cron_last_run_success == 0", "the cron container's log"),
        cron_call_late(
            f"time() - stories_cron_last_success_timestamp_seconds > {late:g} * stories_cron_expected_interval_seconds",
            late,
        ),
    ]


# The scheduled calls' alerts of both targets: each target's expression, one wording. The expressions give each
# alert a `cronjob` label (the cron.jobs entry's name), which the texts name.


def cron_call_failed(expr: str, log: str) -> AlertRule:
    """`log`: where the failed call's output is."""
    return AlertRule(
        "CronCallFailed",
        expr,
        "0m",
        "warning",
        "The app's scheduled call {{ $labels.cronjob }} failed",
        f"The last call of {{{{ $labels.cronjob }}}} failed (an error status, success=false, no answer); see {log}.",
    )


def cron_call_late(expr: str, late: float) -> AlertRule:
    """`expr`: the age of the last success where it exceeds `late` (cron.lateFactor) times the longest gap."""
    return AlertRule(
        "CronCallLate",
        expr,
        "0m",
        "warning",
        "The app's scheduled call {{ $labels.cronjob }} is late",
        "The last successful call of {{ $labels.cronjob }} is {{ $value | humanize }} s old,"
        f" more than {late:g} times the longest gap of its schedule.",
    )


def _dump_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=120)


def rule_files(alerts: list[AlertRule], records: list[RecordingRule]) -> dict[str, dict[str, Any]]:
    """The rule files' documents by file name: one group of alerts, one of recording rules (both targets)."""
    return {
        "alerts.yml": {"groups": [{"name": "stories-alerts", "rules": [rule.as_rule() for rule in alerts]}]},
        "recording.yml": {"groups": [{"name": "stories-recording", "rules": [rule.as_rule() for rule in records]}]},
    }


def render_rules(settings: Settings) -> dict[str, str]:
    files = rule_files(alert_rules(settings), recording_rules())
    return {name: _dump_yaml(document) for name, document in files.items()}


APP_ALIAS = "app"  # every app replica's alias on the app network: Docker's DNS answers with the running ones


def app_discovery(settings: Settings) -> list[dict[str, Any]]:
    """The running app replicas, found through Docker's DNS: a replica the scaler keeps stopped has no
    DNS entry, so it is neither scraped nor probed (a static target would be down and alerting)."""
    return [{"names": [APP_ALIAS], "type": "A", "port": settings.app.port, "refresh_interval": "15s"}]


def render_prometheus(settings: Settings) -> str:
    monitoring = settings.monitoring
    jobs: list[dict[str, Any]] = [{"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]}]
    jobs += [
        {"job_name": job, "static_configs": [{"targets": [target]}]}
        for job, target in EXPORTER_TARGETS.items()
        if job != "cadvisor" or monitoring.cadvisor
    ]
    if monitoring.grafana.enabled:
        jobs.append({"job_name": "grafana", "static_configs": [{"targets": ["grafana:3000"]}]})
    jobs.append({"job_name": "backup", "static_configs": [{"targets": [f"backup:{BACKUP_METRICS_PORT}"]}]})
    if settings.app.metrics_path:
        jobs.append(
            {"job_name": "app", "metrics_path": settings.app.metrics_path, "dns_sd_configs": app_discovery(settings)}
        )
    if settings.scaling.enabled:
        jobs.append({"job_name": "scaler", "static_configs": [{"targets": [f"scaler:{SCALER_METRICS_PORT}"]}]})
    if settings.cron.enabled:
        jobs.append({"job_name": "cron", "static_configs": [{"targets": [f"cron:{CRON_METRICS_PORT}"]}]})
    jobs.append(
        {
            "job_name": BLACKBOX_JOB,
            "metrics_path": "/probe",
            "params": {"module": ["http_2xx"]},
            "dns_sd_configs": app_discovery(settings),
            "relabel_configs": [
                {
                    "source_labels": ["__address__"],
                    "target_label": "__param_target",
                    "replacement": f"http://$1{settings.app.health_path}",
                },
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": BLACKBOX_TARGET},
            ],
        }
    )
    document = {
        "global": {
            "scrape_interval": f"{monitoring.scrape_interval_seconds}s",
            "evaluation_interval": f"{monitoring.scrape_interval_seconds}s",
            "external_labels": {"platform": "1001-stories", "domain": settings.domain},
        },
        "rule_files": [f"{PROMETHEUS_RULES_DIR}/*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [EXPORTER_TARGETS["alertmanager"]]}]}]},
        "scrape_configs": jobs,
    }
    return _dump_yaml(document)


def _receiver_config(receiver: Receiver, secrets: Mapping[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {"name": receiver.name}
    if receiver.email:
        email: dict[str, Any] = {
            "to": receiver.email.to,
            "from": receiver.email.sender,
            "smarthost": receiver.email.smarthost,
            "send_resolved": True,
        }
        if receiver.email.auth_username:
            email["auth_username"] = receiver.email.auth_username
        if receiver.email.auth_password_secret:
            email["auth_password"] = secrets[receiver.email.auth_password_secret]
        config["email_configs"] = [email]
    if receiver.slack:
        config["slack_configs"] = [
            {
                "api_url": secrets[receiver.slack.api_url_secret],
                "channel": receiver.slack.channel,
                "send_resolved": True,
                "title": "{{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})",
                "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
            }
        ]
    if receiver.webhook:
        config["webhook_configs"] = [{"url": secrets[receiver.webhook.url_secret], "send_resolved": True}]
    return config


def render_alertmanager(settings: Settings, secrets: Mapping[str, str]) -> str:
    """alertmanager.yml. With no receivers configured, alerts are kept (visible in the UI and API)
    but sent nowhere, which is a valid configuration."""
    receivers = settings.monitoring.receivers
    routes = [
        {"receiver": receiver.name, "matchers": [f'severity=~"{"|".join(receiver.severities)}"'], "continue": True}
        for receiver in receivers
    ]
    route: dict[str, Any] = {
        "receiver": "blackhole",
        "group_by": ["alertname", "job"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    if routes:
        route["routes"] = routes
    document = {
        "route": route,
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "instance"],
            }
        ],
        "receivers": [{"name": "blackhole"}] + [_receiver_config(receiver, secrets) for receiver in receivers],
    }
    return _dump_yaml(document)


def render_blackbox() -> str:
    document = {
        "modules": {
            "http_2xx": {
                "prober": "http",
                "timeout": "5s",
                "http": {"valid_status_codes": [200], "method": "GET", "preferred_ip_protocol": "ip4"},
            }
        }
    }
    return _dump_yaml(document)


def render_grafana_provisioning() -> dict[str, str]:
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": GRAFANA_DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    dashboards = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "1001-stories",
                "folder": "1001 Stories",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARDS_DIR},
            }
        ],
    }
    return {"datasources.yml": _dump_yaml(datasource), "dashboards.yml": _dump_yaml(dashboards)}
