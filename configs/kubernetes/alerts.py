"""The alert and recording rules of a Kubernetes stack: the Docker target's rules whose metrics exist there
(configs/metrics.py KUBERNETES_METRICS; the others could never fire, or, like AppReplicasBelowFloor's
`or vector(0)`, would always), and the backup alerts rebuilt from what Kubernetes has.

The backup alerts keep the Docker target's names, `kind` label, texts (but where a failed run's log is), thresholds
(`backup.lateFactor` times the interval from the settings) and `for`: restic's CronJobs
(configs/kubernetes/backup.py) through kube-state-metrics, the base backups and WAL archiving through
CloudNativePG's exporter. Without S3 backups there are none of these on Kubernetes, and no backup alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs import monitoring
from configs.kubernetes.backup import FILES_BACKUP, FILES_CHECK
from configs.metrics import KUBERNETES_METRICS, metric_names
from configs.monitoring import AlertRule, RecordingRule, backup_failed, backup_late, wal_archiving_failing
from model.settings import Settings
from model.topology import POSTGRES_CLUSTER


def recording_rules() -> list[RecordingRule]:
    return [rule for rule in monitoring.recording_rules() if metric_names(rule.expr) <= set(KUBERNETES_METRICS)]


def alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    available = set(KUBERNETES_METRICS) | {rule.record for rule in recording_rules()}
    rules = [rule for rule in monitoring.alert_rules(settings) if metric_names(rule.expr) <= available]
    if settings.backup.s3.enabled:
        rules += backup_alert_rules(settings, namespace)
    return rules


@dataclass(frozen=True)
class BackupKind:
    """A kind of backup as Prometheus sees it on Kubernetes: PromQL for the time of its last success and for
    its last run having failed (each one series by namespace), and its interval from the settings."""

    name: str  # the Docker target's kind
    seconds: int
    last_success: str
    failed: str


def backup_alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """One rule per alert as on Docker, its expression the union of the kinds' (each sets its `kind`)."""
    backup, late = settings.backup, settings.backup.late_factor
    kinds = [
        postgres_kind(settings, namespace),
        cron_job_kind(namespace, FILES_BACKUP, "files", backup.files.interval_minutes * 60),
        cron_job_kind(namespace, FILES_CHECK, "verify", backup.verify_interval_hours * 3600),
    ]
    failed = " or ".join(with_kind(kind.failed, kind.name) for kind in kinds)
    aged = " or ".join(
        with_kind(f"time() - {kind.last_success} > {late:g} * {kind.seconds}", kind.name) for kind in kinds
    )
    log = (
        f"the Cluster's Backup objects for postgres (kubectl -n {namespace} get backups), else the failed Job of "
        f"its CronJob (kubectl -n {namespace} get jobs)"
    )
    cnpg = f'{{namespace="{namespace}"}}'
    return [
        backup_failed(failed, log),
        backup_late(aged, late),
        wal_archiving_failing(
            f"cnpg_pg_stat_archiver_last_failed_time{cnpg} > cnpg_pg_stat_archiver_last_archived_time{cnpg}"
        ),
    ]


def with_kind(expr: str, kind: str) -> str:
    """`expr` with the `kind` label the backup alerts' texts name, as the Docker target's backup service sets it."""
    return f'label_replace({expr}, "kind", "{kind}", "", "")'


def cron_job_kind(namespace: str, cron_job: str, name: str, seconds: int) -> BackupKind:
    """A restic CronJob scheduled at least every `seconds`. Its last success is the CronJob's
    lastSuccessfulTime (the completion of its newest successful Job), or its creation while it has none
    (kube-state-metrics omits the time until then): a CronJob that never succeeds is late too. Its last run
    failed when a failed Job of it started after that: concurrencyPolicy Forbid keeps runs apart, and the
    failed Jobs the history keeps from before the last success are older."""
    cron_jobs = f'{{namespace="{namespace}", cronjob="{cron_job}"}}'
    in_namespace = f'namespace="{namespace}"'
    last_success = (
        f"max by (namespace) (kube_cronjob_status_last_successful_time{cron_jobs} or kube_cronjob_created{cron_jobs})"
    )
    failed_started = (
        f"max by (namespace) (kube_job_status_start_time{{{in_namespace}}}"
        f' and on (namespace, job_name) (kube_job_failed{{{in_namespace}, condition="true"}} == 1)'
        f" and on (namespace, job_name)"
        f' kube_job_owner{{{in_namespace}, owner_kind="CronJob", owner_name="{cron_job}"}})'
    )
    return BackupKind(name, seconds, last_success, f"{failed_started} > {last_success}")


def postgres_kind(settings: Settings, namespace: str) -> BackupKind:
    """The base backups (the ScheduledBackup, every `backup.postgres.fullIntervalHours`). The backup times come
    from the primary (the replicas export 0, as the primary does until the first backup); before the first
    backup the instances' oldest pod stands in for the last success."""
    cnpg = f'{{namespace="{namespace}"}}'
    succeeded = f"cnpg_collector_last_available_backup_timestamp{cnpg}"
    failed = f"max by (namespace) (cnpg_collector_last_failed_backup_timestamp{cnpg})"
    instances = f'{{namespace="{namespace}", pod=~"{POSTGRES_CLUSTER}-[0-9]+"}}'
    last_success = f"(max by (namespace) ({succeeded} != 0) or min by (namespace) (kube_pod_created{instances}))"
    seconds = settings.backup.postgres.full_interval_hours * 3600
    return BackupKind("postgres", seconds, last_success, f"{failed} > max by (namespace) ({succeeded})")
