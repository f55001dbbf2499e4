"""The app's scheduled calls on Kubernetes against the settings the Docker target's cron service runs by: one
CronJob per cron.jobs entry with its schedule, time zone and timeout, the secret from the app's Secret and never on
a command line, hardened, reaching the app and nothing else. The script itself runs against a local server in
tests/integration/test_k8s_cron_call.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from configs.cron import CONNECT_RETRY_SECONDS
from configs.kubernetes import cron
from configs.kubernetes.common import HARDENED
from configs.kubernetes.network import network_policies
from model.schedule import CronSchedule
from tests.unit.test_k8s_alerts import k8s_with
from tests.unit.test_k8s_plan import one
from tools.plan import settings_for

SETTINGS = settings_for("k8s")
NAMESPACE = SETTINGS.kubernetes.namespace


def pod_of(cron_job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def test_one_cron_job_per_entry_on_its_schedule_in_the_stacks_time_zone() -> None:
    for job in SETTINGS.cron.jobs:
        spec = one("CronJob", f"cron-{job.name}")["spec"]
        assert spec["schedule"] == job.schedule
        assert spec["timeZone"] == SETTINGS.cron_timezone == "Europe/Berlin"  # scaling.timezone
        assert spec["concurrencyPolicy"] == "Forbid"
        assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 3)
        job_spec = spec["jobTemplate"]["spec"]
        assert job_spec["backoffLimit"] == 0  # a call the app may have received is never made again
        assert job_spec["activeDeadlineSeconds"] == 60 + CONNECT_RETRY_SECONDS + SETTINGS.cron.timeout_seconds
        (container,) = pod_of(one("CronJob", f"cron-{job.name}"))["containers"]
        assert f"--max-time {SETTINGS.cron.timeout_seconds} " in container["command"][-1]
        assert f"--header @- http://app.{NAMESPACE}.svc:{SETTINGS.app.port}{job.path})" in container["command"][-1]


def test_the_settings_set_the_time_zone_timeout_and_jobs() -> None:
    jobs = [{"name": "digest", "path": "/api/cron/notification-digest", "schedule": "15 9 * * 1-5"}]
    settings = k8s_with(cron={"timezone": "Asia/Seoul", "timeoutSeconds": 30, "jobs": jobs})
    (manifest,) = cron.cron_jobs(settings, NAMESPACE)
    assert manifest["metadata"]["name"] == "cron-digest"
    assert manifest["spec"]["timeZone"] == "Asia/Seoul"
    assert manifest["spec"]["schedule"] == "15 9 * * 1,2,3,4,5"
    assert manifest["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 60 + CONNECT_RETRY_SECONDS + 30


@pytest.mark.parametrize(
    ("schedule", "kubernetes"),
    [
        ("30 3 * * *", "30 3 * * *"),
        ("@daily", "0 0 * * *"),
        ("0 9 * * 5-7", "0 9 * * 0,5,6"),  # crontab's 7 is Sunday; robfig/cron's weekdays end at 6
        ("0 9 */10 * *", "0 9 1,11,21,31 * *"),
        ("0 12 * jan-mar sun", "0 12 * jan-mar 0"),
    ],
)
def test_schedules_are_written_as_kubernetes_reads_them(schedule: str, kubernetes: str) -> None:
    assert cron.kubernetes_schedule(schedule) == kubernetes
    ours, theirs = CronSchedule.parse(schedule), CronSchedule.parse(kubernetes)
    assert dataclasses.replace(ours, text=kubernetes) == theirs  # the same times, the day fields read alike


def test_the_secret_comes_from_the_apps_secret_and_never_from_a_command_line() -> None:
    pod = pod_of(one("CronJob", "cron-data-retention"))
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "CRON_SECRET", "valueFrom": {"secretKeyRef": {"name": "app-env", "key": "CRON_SECRET"}}}
    ]
    script = container["command"][-1]
    # printf is the shell's builtin: the header reaches curl on its standard input, not in its arguments.
    assert "printf 'Authorization: Bearer %s\\n' \"$CRON_SECRET\" | curl " in script
    assert "--header @-" in script and "-H " not in script and "echo $CRON_SECRET" not in script
    assert script.count("$CRON_SECRET") == 1


def test_the_calls_are_hardened_and_pinned() -> None:
    pod = pod_of(one("CronJob", "cron-hard-delete"))
    (container,) = pod["containers"]
    assert container["securityContext"] == HARDENED
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10002
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert container["image"] == cron.CURL_IMAGE
    assert container["resources"]["limits"]["memory"] == f"{SETTINGS.cron.resources.memory_mb}Mi"


def test_the_calls_reach_the_app_and_the_app_admits_them() -> None:
    policy = one("NetworkPolicy", "cron")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "cron"}}
    assert policy["policyTypes"] == ["Egress"]
    assert policy["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "app"}}}],
            "ports": [{"protocol": "TCP", "port": SETTINGS.app.port}],
        }
    ]
    assert one("NetworkPolicy", "allow-dns")["spec"]["podSelector"] == {"matchLabels": {}}  # every pod: these too
    (ingress,) = one("NetworkPolicy", "app")["spec"]["ingress"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cron"}}} in ingress["from"]


def test_without_cron_there_is_no_call_and_no_way_in_for_one() -> None:
    settings = k8s_with(cron={"enabled": False})
    policies = {policy["metadata"]["name"]: policy for policy in network_policies(settings, NAMESPACE)}
    assert "cron" not in policies
    (ingress,) = policies["app"]["spec"]["ingress"]
    assert "cron" not in str(ingress)
