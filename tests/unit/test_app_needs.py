"""What the real app needs from its platform (README: The app's needs): its schema migrations once per
deploy, its data directories as shared, kept, backed-up and served volumes, and its scheduled calls. The
program against Pulumi mocks, for every stack: what each resource is given, and in which order."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
import yaml

import tools.plan as plan_module
from components.app import MIGRATION_ENV, database_url, migration_database_url
from components.container import OneShotFailedError, one_shot_outcome
from configs.monitoring import CRON_METRICS_PORT
from cron.service import CronConfig
from model.loading import load_settings
from model.topology import container_topology
from tests.conftest import plan_of
from tests.unit.test_plan_stacks import containers, label, networks_of, replicas, uploaded
from tests.unit.test_settings import MINIMAL, with_change
from tools.plan import CONTAINER, SECRET, Plan, PlanMocks, run_plan, run_program, settings_for, stack_config

VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


def env_of(inputs: dict[str, Any]) -> dict[str, str]:
    return dict(str(entry).split("=", 1) for entry in inputs.get("envs") or [])


def mounts(inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(v["containerPath"]): v for v in inputs.get("volumes") or []}


def with_settings(stack: str, change: dict[str, Any]) -> Plan:
    """The stack's plan with `change` merged into its settings (one level deep per top-level key)."""
    config, secret_keys = stack_config(stack)
    settings = json.loads(config["1001-stories:settings"])
    for key, value in change.items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
    return run_plan(stack, {**config, "1001-stories:settings": json.dumps(settings)}, secret_keys)


# ---------------------------------------------------------------------------------------------------
# Settings: defaults that fit the app


def test_the_defaults_fit_the_app() -> None:
    settings = load_settings(MINIMAL)
    dirs = {each.name: (each.path, each.url_path, each.cache, each.backup) for each in settings.app.data_dirs}
    assert dirs == {
        "uploads": ("/app/uploads", None, "static", True),
        "books": ("/app/public/books", "/books/", "pdf", True),
        "covers": ("/app/public/covers", "/covers/", "static", True),
        "avatars": ("/app/public/avatars", "/avatars/", "static", True),
        "generated-images": ("/app/public/generated-images", "/generated-images/", "static", True),
        "exports": ("/app/private/exports", None, "static", False),
    }
    migration = settings.app.migration
    assert migration.enabled and migration.command == ["npx", "prisma", "migrate", "deploy"]
    assert migration.build_target == "build-deps" and migration.timeout_seconds == 600
    cron = settings.cron
    assert cron.enabled and settings.cron_timezone == settings.scaling.timezone == "Europe/Berlin"
    assert {job.name: (job.path, job.schedule) for job in cron.jobs} == {
        "data-retention": ("/api/cron/data-retention", "30 3 * * *"),
        "hard-delete": ("/api/cron/hard-delete", "0 4 * * *"),
        "notification-digest": ("/api/cron/notification-digest", "0 * * * *"),
        "server-status": ("/api/cron/server-status", "0 7 * * *"),
    }


def test_the_cron_time_zone_is_the_stacks_unless_set() -> None:
    seoul = load_settings(with_change("scaling.timezone", "Asia/Seoul"))
    assert seoul.cron_timezone == "Asia/Seoul"
    config = with_change("scaling.timezone", "Asia/Seoul")
    config["cron"] = {"timezone": "UTC"}
    assert load_settings(config).cron_timezone == "UTC"


def test_a_built_app_migrates_from_its_own_dockerfile_by_default() -> None:
    config = {"domain": "stories.example.org", "app": {"build": {"context": "../app", "imageName": "app:1.0.0"}}}
    assert load_settings(config).app.migration.image is None  # built: app.build at buildTarget
    assert load_settings({**MINIMAL, "app": {**MINIMAL["app"], "migration": {"enabled": False}}})


# ---------------------------------------------------------------------------------------------------
# The migration: once per deploy, before the replicas, straight to Postgres


def test_the_migration_is_a_one_shot_straight_to_postgres(stack_plan: Plan) -> None:
    settings = settings_for(stack_plan.stack)
    migration = containers(stack_plan)["app-migration"]
    # pulumi up waits for its exit and keeps its log and exit code; it never runs again by itself.
    assert migration["attach"] is True and migration["logs"] is True
    assert migration["mustRun"] is False and migration["restart"] == "no" and migration.get("start", True)
    timeout = settings.app.migration.timeout_seconds
    assert migration["entrypoints"] == ["timeout", str(timeout)]
    assert migration["command"] == settings.app.migration.command == ["npx", "prisma", "migrate", "deploy"]
    assert networks_of(migration) == {"data"}, "Postgres and nothing else"
    assert migration["user"] == "1001:1001" and migration["readOnly"] is True
    assert migration["capabilities"] == {"drops": ["ALL"]}
    env = env_of(migration)
    assert env["DATABASE_URL"] == SECRET and {k: env[k] for k in MIGRATION_ENV} == MIGRATION_ENV
    url = migration_database_url(settings, container_topology(settings), "p@ss/word")
    assert url.startswith("postgresql://stories_user:p%40ss%2Fword@postgres:5432/stories_db?")
    query = dict(item.split("=", 1) for item in url.split("?", 1)[1].split("&"))
    assert "pgbouncer" not in query and query["sslmode"] == "require" and query["sslaccept"] == "strict"
    assert uploaded(stack_plan, "app-migration")[query["sslcert"]].startswith("-----BEGIN CERTIFICATE-----")
    assert label(migration, "role") == "one-shot"


def test_pinned_stacks_pull_the_migration_image_they_name() -> None:
    for stack in ("staging", "prod"):
        plan = plan_of(stack)
        settings = settings_for(stack)
        image = plan.named(REMOTE_IMAGE, "app-migration-image").inputs["name"]
        assert image == settings.app.migration.image and image != settings.app.image
        assert label(containers(plan)["app-migration"], "image") == image


def test_dev_builds_the_migration_from_the_apps_dockerfile_at_its_build_deps_stage() -> None:
    plan = plan_of("dev")
    app, migration = plan.named(IMAGE, "app-image").inputs, plan.named(IMAGE, "app-migration-image").inputs
    assert migration["build"]["context"] == app["build"]["context"] == "../1001-stories"
    assert migration["build"]["target"] == "build-deps" and app["build"]["target"] == "runner"
    assert migration["imageName"] == "stories-app-migrate:1.0.0-dev"
    assert containers(plan)["app-migration"]["image"] == "stories-app-migrate:1.0.0-dev"


def test_the_e2e_stand_in_is_its_own_migration_image() -> None:
    plan = plan_of("e2e")
    assert [r.name for r in plan.of_type(REMOTE_IMAGE) if r.inputs["name"] == "stories-e2e/app:1.0.0"] == ["app-image"]
    running = containers(plan)
    assert running["app-migration"]["image"] == running["app-1"]["image"]
    assert running["app-migration"]["command"] == ["python3", "/app/standin_app.py", "migrate"]


def registration_order(stack: str, mocks: PlanMocks | None = None) -> list[str]:
    resources, _ = run_program(stack, mocks or PlanMocks())
    return [r.name for r in resources if r.type == CONTAINER]


def test_no_replica_is_created_before_both_one_shots() -> None:
    """The replicas depend on the migration and the volume owner having exited 0: they register after
    both (the order in which Pulumi, and the e2e applier, create them)."""
    order = registration_order("prod")
    first_replica = min(order.index(name) for name in ("app-1", "app-2", "app-3"))
    assert order.index("app-migration") < first_replica and order.index("app-volumes") < first_replica
    assert order.index("postgres") < order.index("app-migration")


LEAKED = secrets.token_urlsafe(12)  # a password in a migration's log, which the message must not repeat


class FailedMigration(PlanMocks):
    """The provider's state after a migration that exited 1: exit_code and container_logs (attach, logs)."""

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == CONTAINER and args.name == "app-migration":
            logs = "Applying migration `20251215120000_add_book_favorites_table`\n" + (
                f"Error: P3018 at postgresql://stories_user:{LEAKED}@postgres:5432/stories_db\n"
            )
            outputs = {**outputs, "exitCode": 1, "containerLogs": logs}
        return resource_id, outputs


def test_a_failed_migration_stops_the_deploy_with_its_log_and_no_replica_is_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitors: list[plan_module.RecordingMonitor] = []

    class Watched(plan_module.RecordingMonitor):
        def __init__(self, mocks: Any, revealed: bool = False) -> None:
            super().__init__(mocks, revealed)
            monitors.append(self)

    monkeypatch.setattr(plan_module, "RecordingMonitor", Watched)
    with pytest.raises(Exception) as raised:
        run_program("prod", FailedMigration())
    message = str(raised.value)
    assert "the app's schema migration (prod-app-migration) exited with code 1" in message
    assert "20251215120000_add_book_favorites_table" in message and "P3018" in message
    assert LEAKED not in message and "postgresql://[redacted]@postgres" in message
    assert "docker start -a prod-app-migration" in message and "pulumi up --replace" in message
    (monitor,) = monitors
    registered = {r.name for r in monitor.recorded if r.type == CONTAINER}
    assert "app-migration" in registered and "postgres" in registered
    assert not registered & {"app-1", "app-2", "app-3"}, "no replica registered, none replaced"


def test_one_shot_outcome_passes_zero_and_unknown_and_keeps_the_last_lines() -> None:
    one_shot_outcome("x", "s-x", 0, "fine")
    one_shot_outcome("x", "s-x", None, None)  # a preview, or the mocks
    logs = "\n".join(f"line {number}" for number in range(100))
    with pytest.raises(OneShotFailedError) as raised:
        one_shot_outcome("the migration", "s-app-migration", 124, logs, "urn:pulumi:s::p::docker:index/container:C::m")
    message = str(raised.value)
    assert "exited with code 124" in message and "line 99" in message and "line 59" not in message
    assert "pulumi up --replace 'urn:pulumi:s::p::docker:index/container:C::m'" in message


def test_the_migration_can_be_turned_off() -> None:
    plan = with_settings("prod", {"app": {**yaml.safe_load(_PROD_APP), "migration": {"enabled": False}}})
    assert "app-migration" not in containers(plan) and "app-volumes" in containers(plan)


_PROD_APP = "{image: 'ghcr.io/1001-stories/app:1.7.3', replicas: 2, maxReplicas: 3}"


def test_postgres_is_waited_for_before_what_depends_on_it(stack_plan: Plan) -> None:
    postgres = containers(stack_plan)["postgres"]
    assert postgres["wait"] is True and postgres["waitTimeout"] == 300 and postgres.get("healthcheck")


# ---------------------------------------------------------------------------------------------------
# Data directories: shared, kept, given their owner, backed up, served


def test_every_data_directory_is_one_volume_shared_by_every_replica(stack_plan: Plan) -> None:
    stack, settings = stack_plan.stack, settings_for(stack_plan.stack)
    volumes = {str(r.inputs["name"]): r.name for r in stack_plan.of_type(VOLUME)}
    for each in settings.app.data_dirs:
        # The resource and volume names of uploads and books are the ones the stack always had: kept data.
        assert volumes[f"{stack}-app-{each.name}"] == f"app-{each.name}"
    for name, inputs in replicas(stack_plan).items():
        mounted = mounts(inputs)
        for each in settings.app.data_dirs:
            assert mounted[each.path]["volumeName"] == f"{stack}-app-{each.name}", (name, each.path)
            assert mounted[each.path]["readOnly"] is False
        assert settings.app.tmp_path in inputs["tmpfs"] and settings.app.cache_path in inputs["tmpfs"]


def test_the_volumes_get_their_owner_before_a_replica_starts(stack_plan: Plan) -> None:
    stack, settings = stack_plan.stack, settings_for(stack_plan.stack)
    owner = containers(stack_plan)["app-volumes"]
    assert owner["attach"] is True and owner["mustRun"] is False and owner["restart"] == "no"
    assert owner["image"] == replicas(stack_plan)["app-1"]["image"], "the app's own image"
    assert owner["readOnly"] is True and owner["networkMode"] == "none"
    targets = owner["command"][1:]
    assert owner["command"][0] == "1001:1001" and len(targets) == len(settings.app.data_dirs)
    assert {v["volumeName"] for v in owner["volumes"]} == {f"{stack}-app-{e.name}" for e in settings.app.data_dirs}
    assert sorted(v["containerPath"] for v in owner["volumes"]) == sorted(targets)
    assert label(owner, "role") == "volume-owner" and label(owner, "owner") == "1001:1001"


def test_nginx_serves_what_the_app_writes_after_its_build(stack_plan: Plan) -> None:
    stack, proxy = stack_plan.stack, settings_for(stack_plan.stack).proxy
    nginx = containers(stack_plan)["nginx"]
    mounted = mounts(nginx)
    served = {"books": proxy.pdf_cache_days, "covers": 0, "avatars": 0, "generated-images": 0}
    conf = next(content for path, content in uploaded(stack_plan, "nginx").items() if path.endswith("nginx.conf"))
    for name, pdf_days in served.items():
        assert mounted[f"/srv/{name}"] == {
            "containerPath": f"/srv/{name}",
            "volumeName": f"{stack}-app-{name}",
            "readOnly": True,
        }
        days = pdf_days or proxy.static_cache_days
        block = re.search(rf"location \^~ /{name}/ \{{(.*?)\n        \}}", conf, re.DOTALL)
        assert block, name
        assert f"alias /srv/{name}/;" in block.group(1)
        assert f'Cache-Control "public, max-age={days * 86400}" always;' in block.group(1)
        assert "X-Content-Type-Options" in block.group(1)
    assert "/srv/uploads" not in mounted and "/srv/exports" not in mounted
    assert "/exports/" not in conf and "autoindex" not in conf


def test_backups_cover_every_kept_data_directory(stack_plan: Plan) -> None:
    stack, settings = stack_plan.stack, settings_for(stack_plan.stack)
    backup = containers(stack_plan)["backup"]
    mounted = mounts(backup)
    config = json.loads(uploaded(stack_plan, "backup")["/etc/stories/backup/backup.json"])
    for each in settings.app.data_dirs:
        path = f"/backup-sources/{each.name}"
        if each.backup:
            assert mounted[path] == {"containerPath": path, "volumeName": f"{stack}-app-{each.name}", "readOnly": True}
            assert config["sources"][each.name] == path
        else:
            assert path not in mounted and each.name not in config["sources"]
    assert config["sources"]["certificates"] == "/backup-sources/letsencrypt"
    assert set(config["sources"]) == {"uploads", "books", "covers", "avatars", "generated-images", "certificates"}


def test_a_data_directory_of_its_own_is_a_volume_backed_up_and_served() -> None:
    config, secret_keys = stack_config("prod")
    settings = json.loads(config["1001-stories:settings"])
    settings["app"]["dataDirs"] = [
        {"name": "books", "path": "/app/public/books", "urlPath": "/library-pdf/", "cache": "pdf"},
        {"name": "audio", "path": "/app/public/audio", "urlPath": "/audio/"},
    ]
    plan = run_plan("prod", {**config, "1001-stories:settings": json.dumps(settings)}, secret_keys)
    assert mounts(replicas(plan)["app-1"])["/app/public/audio"]["volumeName"] == "prod-app-audio"
    assert "/app/public/covers" not in mounts(replicas(plan)["app-1"])
    assert mounts(containers(plan)["backup"])["/backup-sources/audio"]["readOnly"] is True
    conf = next(content for path, content in uploaded(plan, "nginx").items() if path.endswith("nginx.conf"))
    assert "location ^~ /library-pdf/ {" in conf and "location ^~ /audio/ {" in conf
    assert "location ^~ /books/" not in conf and "location ^~ /covers/" not in conf


# ---------------------------------------------------------------------------------------------------
# The scheduled calls: CRON_SECRET, the cron service, its metrics and alerts


def test_cron_secret_is_generated_and_given_to_the_app_and_the_cron_service_only(stack_plan: Plan) -> None:
    running = containers(stack_plan)
    for name in (*replicas(stack_plan), "cron"):
        assert env_of(running[name])["CRON_SECRET"] == SECRET, name
        assert "CRON_SECRET" in str(label(running[name], "secret-env")), name
    holders = {name for name, inputs in running.items() if "CRON_SECRET" in env_of(inputs)}
    assert holders == {*replicas(stack_plan), "cron"}
    assert stack_plan.outputs["cronSecret"] == SECRET
    assert any(
        r.name == "cron-secret-password" for r in stack_plan.of_type("random:index/randomPassword:RandomPassword")
    )


def test_the_revealed_cron_secret_is_the_same_in_the_app_and_the_cron_service() -> None:
    resources, outputs = run_program("prod", PlanMocks(), revealed=True)
    by_name = {r.name: r.inputs for r in resources if r.type == CONTAINER}
    secret = env_of(by_name["cron"])["CRON_SECRET"]
    assert len(secret) == 48 or secret.startswith("pw-")  # the mocks' stand-in for a generated password
    assert env_of(by_name["app-1"])["CRON_SECRET"] == secret == outputs["cronSecret"]


def test_the_cron_service_calls_the_app_by_its_alias_and_is_scraped(stack_plan: Plan) -> None:
    settings = settings_for(stack_plan.stack)
    cron = containers(stack_plan)["cron"]
    assert networks_of(cron) == {"app", "monitoring"}
    assert cron["user"] == "10002:10002" and cron["readOnly"] is True and cron["capabilities"] == {"drops": ["ALL"]}
    assert cron["restart"] == "unless-stopped" and cron["healthcheck"]["tests"][1] == "python"
    image = stack_plan.named(IMAGE, "cron-image").inputs
    assert image["build"]["dockerfile"] == "cron/Dockerfile" and image["build"]["context"] == "."
    assert cron["image"] == image["imageName"] and image["imageName"].startswith("stories-cron:1.0.0-")
    config = CronConfig.model_validate_json(uploaded(stack_plan, "cron")["/etc/stories/cron/cron.json"])
    assert config.base_url == "http://app:3000" and config.timezone == settings.cron_timezone
    assert [job.model_dump() for job in config.jobs] == [job.model_dump() for job in settings.cron.jobs]
    prometheus = next(content for path, content in uploaded(stack_plan, "prometheus").items() if path.endswith(".yml"))
    jobs = {job["job_name"]: job for job in yaml.safe_load(prometheus)["scrape_configs"]}
    assert jobs["cron"]["static_configs"] == [{"targets": [f"cron:{CRON_METRICS_PORT}"]}]


def test_the_cron_service_image_follows_the_scaler_pattern() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dockerfile = (root / "cron" / "Dockerfile").read_text()
    assert "FROM python:3.11.11-slim-bookworm" in dockerfile and "USER 10002" in dockerfile
    assert "COPY cron/requirements.txt /tmp/requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-compile -r /tmp/requirements.txt && rm /tmp/requirements.txt" in dockerfile
    requirements = [
        line for line in (root / "cron" / "requirements.txt").read_text().splitlines() if line[:1].isalpha()
    ]
    assert requirements and all(re.fullmatch(r"[a-z0-9-]+==[\w.]+", line) for line in requirements), requirements


def test_the_cron_alerts_are_rendered_like_the_backups() -> None:
    plan = plan_of("prod")
    alerts = next(c for path, c in uploaded(plan, "prometheus").items() if path.endswith("alerts.yml"))
    rules = {rule["alert"]: rule for group in yaml.safe_load(alerts)["groups"] for rule in group["rules"]}
    assert rules["CronCallFailed"]["expr"] == "stories_cron_last_run_success == 0"
    late = settings_for("prod").cron.late_factor
    assert rules["CronCallLate"]["expr"] == (
        f"time() - stories_cron_last_success_timestamp_seconds > {late:g} * stories_cron_expected_interval_seconds"
    )
    assert {rules[name]["labels"]["severity"] for name in ("CronCallFailed", "CronCallLate")} == {"warning"}


def test_without_cron_there_is_no_service_no_scrape_and_no_alert() -> None:
    plan = with_settings("prod", {"cron": {"enabled": False}})
    assert "cron" not in containers(plan) and not [r for r in plan.of_type(IMAGE) if r.name == "cron-image"]
    alerts = next(c for path, c in uploaded(plan, "prometheus").items() if path.endswith("alerts.yml"))
    assert "CronCall" not in alerts
    # The app keeps its secret: a route can still be called by hand.
    assert env_of(replicas(plan)["app-1"])["CRON_SECRET"] == SECRET


def test_the_app_still_reaches_pgbouncer_and_the_migration_postgres() -> None:
    settings = settings_for("prod")
    topo = container_topology(settings)
    assert "@pgbouncer:6432/" in database_url(settings, topo, "x")
    assert "@postgres:5432/" in migration_database_url(settings, topo, "x")


def test_the_e2e_stack_waits_for_services_and_runs_one_shots_to_their_exit() -> None:
    """e2e/stack.py: the one-shots are not services to wait for (they exit), and their exit is checked
    as the program checks it."""
    from e2e.stack import one_shots, services, stop_on_failure

    resources = plan_of("e2e").resources
    assert {inputs["name"] for inputs in one_shots(resources)} == {"e2e-app-migration", "e2e-app-volumes"}
    assert not {inputs["name"] for inputs in services(resources)} & {"e2e-app-migration", "e2e-app-volumes"}
    stop_on_failure("e2e-app-migration", 0, "")
    with pytest.raises(OneShotFailedError, match=r"e2e-app-migration.*exited with code 2"):
        stop_on_failure("e2e-app-migration", 2, "migrate: DATABASE_URL says pgbouncer=true")
