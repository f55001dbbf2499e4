"""The alert and recording rules of a Kubernetes stack: the Docker target's rules whose metrics exist there
(configs/metrics.py KUBERNETES_METRICS; the others could never fire, or, like AppReplicasBelowFloor's
`or vector(0)`, would always), and the alerts of scheduled work rebuilt from what Kubernetes has.

`ServiceDown` watches the scrape targets of the stack's namespace only: the cluster's Prometheus also scrapes the
control plane, whose targets a managed cluster often leaves unreachable. The app's sessions (ActiveSessionsHigh,
KEDA's trigger) are those of the namespace's replicas, where the app is scraped (app.metricsPath).

The backup alerts keep the Docker target's names, `kind` label, texts (but where a failed run's log is), thresholds
(`backup.lateFactor` times the interval from the settings) and `for`: restic's CronJobs
(configs/kubernetes/backup.py) through kube-state-metrics, the base backups and WAL archiving through
CloudNativePG's exporter. Without S3 backups there are none of these on Kubernetes, and no backup alerts. The
app's scheduled calls (configs/kubernetes/cron.py) are CronJobs too: CronCallFailed and CronCallLate keep the
Docker target's names, `cronjob` label (the cron.jobs entry's name), texts and `cron.lateFactor`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from configs import monitoring
from configs.kubernetes.backup import FILES_BACKUP, FILES_CHECK
from configs.kubernetes.cron import CRON, cron_job_name, longest_gap_seconds
from configs.metrics import KUBERNETES_METRICS, metric_names
from configs.monitoring import (
    ACTIVE_SESSIONS,
    AlertRule,
    RecordingRule,
    backup_failed,
    backup_late,
    cron_call_failed,
    cron_call_late,
    service_down,
    wal_archiving_failing,
)
from model.settings import Settings
from model.topology import POSTGRES_CLUSTER


def app_sessions(namespace: str) -> str:
    """The app's active sessions: the sum of its replicas' gauges (the app's PodMonitor labels their namespace)."""
    return f'sum(stories_active_sessions{{namespace="{namespace}"}})'


def recording_rules(settings: Settings, namespace: str) -> list[RecordingRule]:
    kept = [rule for rule in monitoring.recording_rules() if metric_names(rule.expr) <= set(KUBERNETES_METRICS)]
    if settings.app.metrics_path:
        kept.append(RecordingRule(ACTIVE_SESSIONS, app_sessions(namespace)))
    return kept


def alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    available = set(KUBERNETES_METRICS) | {rule.record for rule in recording_rules(settings, namespace)}
    scoped = {"ServiceDown": service_down(settings, f'up{{namespace="{namespace}"}}')}
    rules = [
        scoped.get(rule.name, rule) for rule in monitoring.alert_rules(settings) if metric_names(rule.expr) <= available
    ]
    if settings.backup.s3.enabled:
        rules += backup_alert_rules(settings, namespace)
    if settings.cron.enabled:
        rules += cron_alert_rules(settings, namespace)
    return rules


@dataclass(frozen=True)
class Runs:
    """Scheduled work as Prometheus sees it on Kubernetes: PromQL for the time of its last success and for its
    last run having failed (each one series by namespace), and the longest time its schedule leaves between
    runs. `name`: the value of the label the alerts' texts name (a backup's kind, a scheduled call's name)."""

    name: str
    seconds: int
    last_success: str
    failed: str


def labelled(expr: str, label: str, value: str) -> str:
    """`expr` with the label the alerts' texts name, as the Docker target's services set it."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def any_failed(runs: Iterable[Runs], label: str) -> str:
    return " or ".join(labelled(each.failed, label, each.name) for each in runs)


def any_late(runs: Iterable[Runs], label: str, late: float) -> str:
    """The age of each last success older than `late` times its interval."""
    return " or ".join(
        labelled(f"time() - {each.last_success} > {late:g} * {each.seconds}", label, each.name) for each in runs
    )


def backup_alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """One rule per alert as on Docker, its expression the union of the kinds' (each sets its `kind`)."""
    backup, late = settings.backup, settings.backup.late_factor
    kinds = [
        postgres_kind(settings, namespace),
        cron_job_runs(namespace, FILES_BACKUP, "files", backup.files.interval_minutes * 60),
        cron_job_runs(namespace, FILES_CHECK, "verify", backup.verify_interval_hours * 3600),
    ]
    log = (
        f"the Cluster's Backup objects for postgres (kubectl -n {namespace} get backups), else the failed Job of "
        f"its CronJob (kubectl -n {namespace} get jobs)"
    )
    cnpg = f'{{namespace="{namespace}"}}'
    return [
        backup_failed(any_failed(kinds, "kind"), log),
        backup_late(any_late(kinds, "kind", late), late),
        wal_archiving_failing(
            f"cnpg_pg_stat_archiver_last_failed_time{cnpg} > cnpg_pg_stat_archiver_last_archived_time{cnpg}"
        ),
    ]


def cron_alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """One CronJob per cron.jobs entry, late past cron.lateFactor times its schedule's longest gap."""
    late = settings.cron.late_factor
    calls = [
        cron_job_runs(namespace, cron_job_name(job), job.name, longest_gap_seconds(settings, job))
        for job in settings.cron.jobs
    ]
    log = (
        f"the log of the failed Job of CronJob {CRON}-{{{{ $labels.cronjob }}}} (kubectl -n {namespace} get jobs, "
        f"then kubectl -n {namespace} logs job/<its name>)"
    )
    return [cron_call_failed(any_failed(calls, "cronjob"), log), cron_call_late(any_late(calls, "cronjob", late), late)]


def cron_job_runs(namespace: str, cron_job: str, name: str, seconds: int) -> Runs:
    """A CronJob scheduled at least every `seconds`. Its last success is the CronJob's
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
    return Runs(name, seconds, last_success, f"{failed_started} > {last_success}")


def postgres_kind(settings: Settings, namespace: str) -> Runs:
    """The base backups (the ScheduledBackup, every `backup.postgres.fullIntervalHours`). The backup times come
    from the primary (the replicas export 0, as the primary does until the first backup); before the first
    backup the instances' oldest pod stands in for the last success."""
    cnpg = f'{{namespace="{namespace}"}}'
    succeeded = f"cnpg_collector_last_available_backup_timestamp{cnpg}"
    failed = f"max by (namespace) (cnpg_collector_last_failed_backup_timestamp{cnpg})"
    instances = f'{{namespace="{namespace}", pod=~"{POSTGRES_CLUSTER}-[0-9]+"}}'
    last_success = f"(max by (namespace) ({succeeded} != 0) or min by (namespace) (kube_pod_created{instances}))"
    seconds = settings.backup.postgres.full_interval_hours * 3600
    return Runs("postgres", seconds, last_success, f"{failed} > max by (namespace) ({succeeded})")
