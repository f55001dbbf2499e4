"""The app's scheduled calls on Kubernetes, as the Docker target's cron service makes them (cron/service.py): one
CronJob per `cron.jobs` entry, on its schedule in the stack's cron time zone (`spec.timeZone`), calling
`GET <path>` on the app's Service with `Authorization: Bearer $CRON_SECRET`. The call is curl in the pinned
CURL_IMAGE (the cron service's image is built on the Docker host, where a cluster cannot pull it), a success when
the app answers 2xx and the body does not say `"success": false`. A call is never repeated once the app may have
received it: the Job has no retries, and only a connection the app never accepted is tried again, for
CONNECT_RETRY_SECONDS. Runs never overlap (a call still running makes the next one skip its turn)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from configs.cron import CONNECT_RETRY_SECONDS, CRON_UID
from configs.kubernetes.app import APP, APP_ENV_SECRET
from configs.kubernetes.common import HARDENED, Manifest, container_resources, pod_security, scheduled_job, secret_env
from model.schedule import MACROS, CronSchedule
from model.settings import CronJob, Settings

# Pinned here, not in the settings: model/settings.py is part of the Docker target's scaler image, which a new
# key would rebuild. Renovate finds it (renovate.json).
CURL_IMAGE = "curlimages/curl:8.11.1"
CRON = "cron"  # the pods' component label, which the network policies select
SECRET_ENV = "CRON_SECRET"  # its key in the app's Secret too
RETRY_PAUSE_SECONDS = 5
START_SECONDS = 60  # scheduling the pod and pulling the image, within the Job's deadline
# A call the controller could not start this long after its time (the controller down) is skipped, as the
# cron service skips the calls of the time it was not running; CronCallLate says so.
STARTING_DEADLINE_SECONDS = 300
# The longest gap of a schedule is measured from a fixed day, so that the rules do not change with the day of
# the plan; its 400 days hold both clock changes of a year.
GAP_FROM = datetime(2026, 1, 1, tzinfo=UTC)


def cron_job_name(job: CronJob) -> str:
    return f"{CRON}-{job.name}"


def kubernetes_schedule(text: str) -> str:
    """`text` as Kubernetes' parser (robfig/cron v3) reads it the way model/schedule.py does: a macro expanded,
    and a restricted day field as the list of its days (robfig's weekdays end at 6, where crontab's 7 is Sunday
    too, and it may read a stepped `*` as unrestricted)."""
    schedule = CronSchedule.parse(text)
    fields = MACROS.get(text.strip().lower(), text.strip().lower()).split()
    if schedule.days_restricted:
        fields[2] = ",".join(map(str, sorted(schedule.days)))
    if schedule.weekdays_restricted:
        fields[4] = ",".join(map(str, sorted(schedule.weekdays)))
    return " ".join(fields)


def longest_gap_seconds(settings: Settings, job: CronJob) -> int:
    """The longest time between two runs of the job's schedule (the cron service's expected interval)."""
    gap = CronSchedule.parse(job.schedule).longest_gap(GAP_FROM, ZoneInfo(settings.cron_timezone))
    return int(gap.total_seconds())


def deadline_seconds(settings: Settings) -> int:
    """The Job's bound: the pod's start, the connection's retries and the call's own timeout."""
    return START_SECONDS + CONNECT_RETRY_SECONDS + settings.cron.timeout_seconds


def call_script(url: str, timeout_seconds: int, retry_seconds: int = CONNECT_RETRY_SECONDS) -> str:
    """GET `url` with the bearer token written by the shell's printf builtin to curl's standard input
    (`--header @-`): the secret is on no command line and in no output. curl's exit 7 (no connection) is
    tried again for `retry_seconds`, nothing else is. The body is logged, cut at 300 characters."""
    return (
        "set -u\n"
        f"give_up=$(( $(date +%s) + {retry_seconds} ))\n"
        "while :; do\n"
        f"  body=$(printf 'Authorization: Bearer %s\\n' \"${SECRET_ENV}\" | curl --silent --show-error"
        f" --fail-with-body --max-time {timeout_seconds} --header @- {url})\n"
        "  code=$?\n"
        '  if [ "$code" -ne 7 ] || [ "$(date +%s)" -ge "$give_up" ]; then break; fi\n'
        f"  sleep {RETRY_PAUSE_SECONDS}\n"
        "done\n"
        "printf '%.300s\\n' \"$body\"\n"
        '[ "$code" -eq 0 ] || exit "$code"\n'
        "if printf '%s' \"$body\" | grep -Eq '\"success\"[[:space:]]*:[[:space:]]*false'; then\n"
        "  echo 'the app answered \"success\": false' >&2\n"
        "  exit 1\n"
        "fi\n"
    )


def app_url(settings: Settings, namespace: str, path: str) -> str:
    return f"http://{APP}.{namespace}.svc:{settings.app.port}{path}"


def cron_job(settings: Settings, namespace: str, job: CronJob) -> Manifest:
    cron = settings.cron
    container = {
        "name": "call",
        "image": CURL_IMAGE,
        "command": ["/bin/sh", "-c", call_script(app_url(settings, namespace, job.path), cron.timeout_seconds)],
        "env": [secret_env(SECRET_ENV, APP_ENV_SECRET, SECRET_ENV)],
        "resources": container_resources(cron.resources),
        "securityContext": HARDENED,
    }
    pod = {
        "securityContext": pod_security(CRON_UID),
        "restartPolicy": "Never",
        "containers": [container],
        "automountServiceAccountToken": False,
    }
    return scheduled_job(
        cron_job_name(job),
        namespace,
        CRON,
        pod,
        {"backoffLimit": 0, "activeDeadlineSeconds": deadline_seconds(settings)},
        schedule=kubernetes_schedule(job.schedule),
        timeZone=settings.cron_timezone,
        startingDeadlineSeconds=STARTING_DEADLINE_SECONDS,
    )


def cron_jobs(settings: Settings, namespace: str) -> list[Manifest]:
    return [cron_job(settings, namespace, job) for job in settings.cron.jobs]
