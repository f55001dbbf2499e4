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
from configs.kubernetes.app import APP
from configs.kubernetes.backup import FILES_BACKUP, FILES_CHECK, REDIS_BACKUP
from configs.kubernetes.cron import CRON, cron_job_name, longest_gap_seconds
from configs.kubernetes.gateway import APP_ROUTES
from configs.metrics import KUBERNETES_METRICS, metric_names
from configs.monitoring import (
    ACTIVE_SESSIONS,
    DB_CONNECTION_FAILURE_RATIO,
    AlertRule,
    RecordingRule,
    app_health_check_failing,
    app_replicas_below_floor,
    backup_failed,
    backup_late,
    container_cpu_high,
    container_memory_high,
    cron_call_failed,
    cron_call_late,
    service_down,
    slow_responses,
    wal_archiving_failing,
)
from model.settings import Settings
from model.topology import POSTGRES_CLUSTER


def app_sessions(namespace: str) -> str:
    """The app's active sessions: the sum of its replicas' gauges (the app's PodMonitor labels their namespace)."""
    return f'sum(stories_active_sessions{{namespace="{namespace}"}})'


def database_failure_ratio(namespace: str) -> str:
    """Each Postgres instance's failed pings of its PostgreSQL, as pg_up's on Docker: CloudNativePG's exporter
    pings at every scrape and sets `cnpg_collector_up{cluster}` (1.27.0,
    pkg/management/postgres/webserver/metricserver/pg_collector.go)."""
    return f'1 - avg_over_time(cnpg_collector_up{{namespace="{namespace}", cluster="{POSTGRES_CLUSTER}"}}[5m])'


def recording_rules(settings: Settings, namespace: str) -> list[RecordingRule]:
    kept = [rule for rule in monitoring.recording_rules() if metric_names(rule.expr) <= set(KUBERNETES_METRICS)]
    kept.append(RecordingRule(DB_CONNECTION_FAILURE_RATIO, database_failure_ratio(namespace)))
    if settings.app.metrics_path:
        kept.append(RecordingRule(ACTIVE_SESSIONS, app_sessions(namespace)))
    return kept


def alert_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """The Docker target's rules in its order, those of `replaced_rules` in their Kubernetes form, less those
    whose metrics do not exist there."""
    available = set(KUBERNETES_METRICS) | {rule.record for rule in recording_rules(settings, namespace)}
    replaced = {rule.name: rule for rule in replaced_rules(settings, namespace)}
    rules = [replaced.get(rule.name, rule) for rule in monitoring.alert_rules(settings)]
    rules = [rule for rule in rules if metric_names(rule.expr) <= available]
    if settings.backup.s3.enabled:
        rules += backup_alert_rules(settings, namespace)
    if settings.cron.enabled:
        rules += cron_alert_rules(settings, namespace)
    return rules


def replaced_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """The Docker target's rules whose metrics Kubernetes has under other names, with the same thresholds."""
    return [
        service_down(settings, f'up{{namespace="{namespace}"}}'),
        *app_rules(settings, namespace),
        *container_rules(settings, namespace),
        slow_responses(settings, app_response_p95(namespace), "The slowest 5% of the app's responses took over"),
    ]


def app_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """The app's readiness probes (on app.healthPath) stand for the blackbox probes: a replica failing
    its probe (`instance`: its pod), and the Deployment's available replicas under app.replicas, KEDA's
    minReplicaCount, which the stack never scales below."""
    ready = f'kube_pod_container_status_ready{{namespace="{namespace}", container="{APP}"}}'
    available = f'kube_deployment_status_replicas_available{{namespace="{namespace}", deployment="{APP}"}}'
    return [
        app_health_check_failing(settings, f'label_replace({ready} == 0, "instance", "$1", "pod", "(.+)")'),
        app_replicas_below_floor(
            settings,
            f"sum({available})",
            "are available (ready, as their readiness probe says)",
            " A replica that cannot be scheduled or started is not available.",
        ),
    ]


def per_container(expr: str) -> str:
    return f"max by (namespace, pod, container) ({expr})"


def container_rules(settings: Settings, namespace: str) -> list[AlertRule]:
    """The namespace's containers against their limits (kube-state-metrics', from the pods' specs: the chart
    drops cAdvisor's), as fractions of them, each named `<pod>/<container>`. The kubelet's cAdvisor series
    of the pods' own cgroups (container="") are left out."""
    cadvisor = f'{{namespace="{namespace}", metrics_path="/metrics/cadvisor", container!=""}}'

    def of_limit(used: str, resource: str) -> str:
        limits = f'kube_pod_container_resource_limits{{namespace="{namespace}", resource="{resource}"}}'
        return f'label_join({used} / {per_container(f"{limits} > 0")}, "name", "/", "pod", "container")'

    memory = of_limit(per_container(f"container_memory_working_set_bytes{cadvisor}"), "memory")
    cpu = of_limit(f"sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{cadvisor}[5m]))", "cpu")
    return [container_memory_high(settings, memory), container_cpu_high(settings, cpu)]


def app_response_p95(namespace: str) -> str:
    """The 95th percentile in seconds of the app's responses through the gateway in the last 5 minutes: Envoy's
    histogram of its upstream request times in ms, over the app's HTTPRoutes' rules (clusters
    `httproute/<namespace>/<route>/rule/<index>`). Without requests it is NaN: no alert."""
    clusters = f'envoy_cluster_name=~"httproute/{namespace}/({"|".join(APP_ROUTES)})/rule/[0-9]+"'
    buckets = f"rate(envoy_cluster_upstream_rq_time_bucket{{{clusters}}}[5m])"
    return f"histogram_quantile(0.95, sum by (le) ({buckets})) / 1000"


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
        cron_job_runs(namespace, REDIS_BACKUP, "redis", backup.files.interval_minutes * 60),  # as on Docker
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
