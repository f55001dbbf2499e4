"""Settings validation: the guide's defaults, and bad configs that each fail with one clear message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic.alias_generators import to_snake

from configs.render import image_versions
from model.loading import ConfigError, load_settings
from model.tuning import container_budget, postgres_tuning, required_max_connections
from tools.plan import STACKS, settings_for

MINIMAL: dict[str, Any] = {
    "domain": "stories.example.org",
    "app": {
        "image": "ghcr.io/1001-stories/app:1.0.0",
        "migration": {"image": "ghcr.io/1001-stories/app-migrate:1.0.0"},
    },
}
DIGEST = "sha256:" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def with_change(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with the value at a dotted path set (intermediate objects created)."""
    config = copy.deepcopy(MINIMAL)
    node = config
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return config


def test_every_stack_file_is_valid() -> None:
    for stack in STACKS:
        settings_for(stack)


def test_defaults_are_the_guides_numbers() -> None:
    settings = load_settings(MINIMAL)
    assert settings.pgbouncer.pool_mode == "transaction"
    assert (settings.pgbouncer.default_pool_size, settings.pgbouncer.min_pool_size) == (20, 5)
    assert (settings.pgbouncer.reserve_pool_size, settings.pgbouncer.max_client_conn) == (5, 100)
    assert settings.redis.maxmemory_mb == 256 and settings.redis.maxmemory_policy == "allkeys-lru"
    assert settings.database.resources.memory_mb == 512 and settings.database.resources.cpus == 0.75
    assert settings.app.resources.memory_mb == 1024 and settings.app.resources.cpus == 1.0
    assert settings.app.max_replicas == 3
    assert settings.monitoring.retention_days == 15
    assert settings.backup.s3.retention_days == 30 and settings.backup.s3.noncurrent_version_days == 7
    limits = settings.proxy.rate_limits
    assert (limits.api_per_second, limits.api_burst, limits.auth_per_minute) == (10, 20, 30)
    assert settings.proxy.client_max_body_mb == 50
    alerts = settings.monitoring.alerts
    assert (alerts.memory_percent, alerts.disk_free_percent, alerts.cpu_percent, alerts.cpu_for_minutes) == (
        90,
        10,
        80,
        5,
    )
    assert (alerts.response_time_seconds, alerts.active_sessions, alerts.db_connection_failure_percent) == (2, 100, 5)


def test_postgres_tuning_follows_container_memory() -> None:
    settings = load_settings(
        with_change("database.resources", {"memoryMb": 2048, "memoryReservationMb": 512, "cpus": 1})
    )
    tuning = postgres_tuning(settings)
    assert tuning.shared_buffers_mb == 512  # 25%
    assert tuning.effective_cache_size_mb == 1536  # 75%
    assert tuning.work_mem_mb == 4
    assert tuning.max_connections == required_max_connections(settings)
    assert tuning.max_connections >= settings.pgbouncer.default_pool_size + settings.pgbouncer.reserve_pool_size


def test_budget_counts_app_at_max_replicas() -> None:
    settings = load_settings(with_change("app.maxReplicas", 3))
    app = container_budget(settings)["app"]
    assert app.count == 3 and app.resources.memory_mb == 1024 and app.key == "app.resources"


def test_budget_keys_name_the_resources_they_read() -> None:
    raw = with_change("monitoring.grafana", {"enabled": True})
    raw["scaling"] = {"enabled": True}
    settings = load_settings(raw)
    dumped = settings.model_dump(by_alias=True)
    for service, allotment in container_budget(settings).items():
        node = dumped
        for part in allotment.key.split("."):
            node = node[part]
        assert node == allotment.resources.model_dump(by_alias=True), service


def test_a_default_window_above_max_replicas_is_clamped_not_refused() -> None:
    raw = with_change("scaling", {"enabled": True})
    raw["app"] = {**raw["app"], "maxReplicas": 1}
    settings = load_settings(raw)  # the default school window asks for 3
    assert max(window.replicas for window in settings.scaling.windows) == 3


@pytest.mark.parametrize(
    ("service", "reference"),
    [
        ("redis", f"redis:7.2.5@{DIGEST}"),
        ("postgres", f"postgres:15.13-bookworm@{DIGEST}"),
        ("grafana", f"grafana/grafana@{DIGEST}"),
        ("nodeExporter", f"prom/node-exporter:v1.8.2@{DIGEST}"),
        ("socketProxy", f"localhost:5000/wollomatic/socket-proxy@{DIGEST}"),
    ],
)
def test_an_image_pinned_by_digest_is_accepted(service: str, reference: str) -> None:
    settings = load_settings(with_change(f"images.{service}", reference))
    assert getattr(settings.images, to_snake(service)) == reference
    assert image_versions(settings).redis[:2] == (7, 2)  # the renderers still read a version


def with_changes(*changes: tuple[str, Any]) -> dict[str, Any]:
    """MINIMAL with several values set (see with_change)."""
    config = copy.deepcopy(MINIMAL)
    for path, value in changes:
        node = config
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


WINDOW = {"name": "day", "start": "00:00", "end": "00:00", "replicas": 2}
SEASON = {"name": "summer", "start": "2027-07-01", "end": "2027-08-31", "factor": 0.3}
DATA_DIR = {"name": "covers", "path": "/app/public/covers", "urlPath": "/covers/"}
CRON_JOB = {"name": "hard-delete", "path": "/api/cron/hard-delete", "schedule": "0 4 * * *"}
SLACK = {"name": "ops", "slack": {"apiUrlSecret": "SLACK_URL", "channel": "#ops"}}

BAD_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, config, the exact key path of the problem, rule fragment)
    ("unknown key", with_change("database.sharedBuffersMb", 128), "settings.database.sharedBuffersMb", "unknown key"),
    ("wrong type", with_change("app.replicas", "two"), "settings.app.replicas", "valid integer"),
    ("replicas above max", with_change("app.replicas", 4), "settings.app.replicas", "must not exceed maxReplicas"),
    ("replicas zero", with_change("app.replicas", 0), "settings.app.replicas", "greater than or equal to 1"),
    ("floating tag", with_change("images.redis", "redis:alpine"), "settings.images.redis", "not a version"),
    (
        "floating tag beside a digest",
        with_change("images.grafana", f"grafana/grafana:latest@{DIGEST}"),
        "settings.images.grafana",
        "not a version",
    ),
    ("no tag", with_change("images.nginx", "nginx"), "settings.images.nginx", "explicit version tag"),
    ("short digest", with_change("images.grafana", "grafana/grafana@sha256:9f86d0"), "settings.images.grafana", "tag"),
    ("postgres major", with_change("images.postgres", "postgres:16.4"), "settings.images.postgres", "PostgreSQL 15"),
    *[
        (f"{service} by digest alone", with_change(f"images.{service}", f"{service}@{DIGEST}"), key, "keep the version")
        for service, key in [
            ("postgres", "settings.images.postgres"),
            ("pgbouncer", "settings.images.pgbouncer"),
            ("redis", "settings.images.redis"),
            ("nginx", "settings.images.nginx"),
        ]
    ],
    (
        "built image named by digest",
        with_change("app", {"build": {"context": ".", "imageName": f"stories-app:1.0@{DIGEST}"}}),
        "settings.app.build.imageName",
        "known only after the build",
    ),
    (
        "image and build",
        with_change("app.build", {"context": ".", "imageName": "a:1.0"}),
        "settings.app.image",
        "exactly one",
    ),
    ("bad domain", with_change("domain", "Stories_Example"), "settings.domain", "DNS name"),
    (
        "reservation above limit",
        with_change("redis.resources", {"memoryMb": 512, "memoryReservationMb": 1024, "cpus": 0.25}),
        "settings.redis.resources.memoryReservationMb",
        "must not exceed memoryMb (512)",
    ),
    (
        "pool above max_connections",
        with_change("database.maxConnections", 20),
        "settings.database.maxConnections",
        "must be at least",
    ),
    (
        "redis without fork headroom",
        with_change("redis.resources", {"memoryMb": 300, "memoryReservationMb": 128, "cpus": 0.25}),
        "settings.redis.resources.memoryMb",
        "fork",
    ),
    ("host too small", with_change("host.memoryMb", 1024), "settings.host.memoryMb", "reserve"),
    (
        "a container's memory above the host's",
        with_change("proxy.resources", {"memoryMb": 9000, "memoryReservationMb": 64, "cpus": 0.5}),
        "settings.proxy.resources.memoryMb",
        "exceeds host.memoryMb (8192)",
    ),
    (
        "a container's cpus above the host's",
        with_change("monitoring.resources.exporter", {"memoryMb": 64, "memoryReservationMb": 16, "cpus": 6}),
        "settings.monitoring.resources.exporter.cpus",
        "exceeds host.cpus (4",
    ),
    ("min pool above default", with_change("pgbouncer.minPoolSize", 30), "settings.pgbouncer.minPoolSize", "default"),
    (
        "client connections below the pool",
        with_change("pgbouncer.defaultPoolSize", 200),
        "settings.pgbouncer.maxClientConn",
        "at least defaultPoolSize (200)",
    ),
    ("unknown pool mode", with_change("pgbouncer.poolMode", "statement"), "settings.pgbouncer.poolMode", "transaction"),
    ("acme without email", with_change("proxy.tls", {"mode": "letsencrypt"}), "settings.proxy.tls.email", "email"),
    ("missing secret", with_change("app.secretEnv", ["SMTP_PASSWORD"]), "settings.app.secretEnv[0]", "no such secret"),
    (
        "missing receiver secret",
        with_change("monitoring.receivers", [SLACK]),
        "settings.monitoring.receivers[0].slack.apiUrlSecret",
        "no such secret",
    ),
    (
        "managed env",
        with_change("app.env", {"DATABASE_URL": "x"}),
        "settings.app.env.DATABASE_URL",
        "set by the platform",
    ),
    (
        "managed secret env",
        with_change("app.secretEnv", ["X_TOKEN", "NEXTAUTH_SECRET"]),
        "settings.app.secretEnv[1]",
        "set by the platform",
    ),
    ("bad docker host", with_change("host.dockerHost", "deploy@host"), "settings.host.dockerHost", "ssh://user@host"),
    ("overlapping subnets", with_change("networks.data", "172.30.1.0/24"), "settings.networks.data", "overlaps app"),
    (
        "overlapping subnets, the earlier one written",
        with_change("networks.app", "172.30.3.0/24"),
        "settings.networks.app",
        "overlaps data",
    ),
    ("public subnet", with_change("networks.data", "8.8.8.0/24"), "settings.networks.data", "private range"),
    ("public egress", with_change("networks.egress", "100.64.0.0/24"), "settings.networks.egress", "RFC 1918"),
    ("small egress", with_change("networks.egress", "10.9.0.0/27"), "settings.networks.egress", "or larger"),
    (
        "expiring a tool prefix",
        with_change("backup.s3", {"enabled": True, "expireCurrentPrefixes": ["dumps/", "restic/"]}),
        "settings.backup.s3.expireCurrentPrefixes[1]",
        "owned by a backup tool",
    ),
    (
        "grafana without monitoring",
        with_change("monitoring", {"enabled": False, "grafana": {"enabled": True}}),
        "settings.monitoring.grafana.enabled",
        "needs monitoring.enabled",
    ),
    (
        "repeated receiver",
        with_change("monitoring.receivers", [SLACK, {**SLACK, "slack": {"apiUrlSecret": "B", "channel": "#b"}}]),
        "settings.monitoring.receivers[1].name",
        "repeats receivers[0].name",
    ),
    (
        "work_mem too large",
        with_change("database.workMemMb", 64),
        "settings.database.workMemMb",
        "exceeds the container",
    ),
    (
        "role writer without principal",
        with_change("backup.s3", {"writer": "role"}),
        "settings.backup.s3.writerTrustedPrincipalArn",
        "writer role",
    ),
    (
        "backup intervals that do not nest",
        with_change("backup.postgres", {"diffIntervalHours": 200}),
        "settings.backup.postgres.diffIntervalHours",
        "intervals must nest",
    ),
    (
        "files backups further apart than the RPO",
        with_change("backup.rpoMinutes", 10),
        "settings.backup.files.intervalMinutes",
        "must not exceed the RPO (10 min)",
    ),
    # Published host ports: unique, the key the user wrote named.
    (
        "grafana on prometheus's port",
        with_change("monitoring.grafana", {"enabled": True, "hostPort": 9090}),
        "settings.monitoring.grafana.hostPort",
        "monitoring.prometheusHostPort publishes it too",
    ),
    (
        "nginx on alertmanager's port",
        with_change("proxy.httpHostPort", 9093),
        "settings.proxy.httpHostPort",
        "monitoring.alertmanagerHostPort publishes it too",
    ),
    (
        "nginx's two ports the same",
        with_changes(("proxy.httpHostPort", 8443), ("proxy.httpsHostPort", 8443)),
        "settings.proxy.httpsHostPort",
        "proxy.httpHostPort publishes it too",
    ),
    # Paths: absolute.
    ("relative health path", with_change("app.healthPath", "api/health"), "settings.app.healthPath", "start"),
    (
        "relative data path",
        with_change("app.dataDirs", [{"name": "u", "path": "app/u"}]),
        "settings.app.dataDirs[0].path",
        "absolute",
    ),
    ("relative cache path", with_change("app.cachePath", ".next/cache"), "settings.app.cachePath", "absolute"),
    # Database names the platform or Postgres owns.
    ("superuser as app user", with_change("database.user", "postgres"), "settings.database.user", "is taken"),
    ("platform role as app user", with_change("database.user", "pgbouncer_auth"), "settings.database.user", "taken"),
    ("reserved role prefix", with_change("database.user", "pg_app"), "settings.database.user", "pg_*"),
    ("system database", with_change("database.name", "template1"), "settings.database.name", "Postgres's own"),
    ("postgres database", with_change("database.name", "postgres"), "settings.database.name", "Postgres's own"),
    # The scaling calendar.
    ("unknown time zone", with_change("scaling.timezone", "Mars/Olympus"), "settings.scaling.timezone", "IANA"),
    (
        "overlapping windows",
        with_change("scaling.windows", [{**WINDOW, "end": "12:00"}, {**WINDOW, "name": "b", "start": "11:00"}]),
        "settings.scaling.windows[1]",
        "overlaps window 'day' at 11:00",
    ),
    (
        "windows with a gap",
        with_change("scaling.windows", [{**WINDOW, "start": "08:00", "end": "20:00"}]),
        "settings.scaling.windows",
        "nothing from 20:00",
    ),
    (
        "a written window above max replicas",
        with_change("scaling.windows", [{**WINDOW, "replicas": 4}]),
        "settings.scaling.windows[0].replicas",
        "can never be met",
    ),
    (
        "overlapping seasons",
        with_change(
            "scaling.seasons", [SEASON, {**SEASON, "name": "late", "start": "2027-08-30", "end": "2027-09-05"}]
        ),
        "settings.scaling.seasons[1].start",
        "falls in season 'summer'",
    ),
    (
        "season ending before it starts",
        with_change("scaling.seasons", [{**SEASON, "end": "2027-06-30"}]),
        "settings.scaling.seasons[0].end",
        "before start (2027-07-01)",
    ),
    (
        "scaling without monitoring",
        with_changes(("scaling.enabled", True), ("monitoring.enabled", False)),
        "settings.scaling.enabled",
        "needs monitoring.enabled",
    ),
    # The app's data directories, its migration and its scheduled calls.
    ("removed uploads path", with_change("app.uploadsPath", "/app/uploads"), "settings.app.uploadsPath", "dataDirs"),
    ("removed books path", with_change("app.booksPath", "/srv/books"), "settings.app.booksPath", "named books"),
    (
        "removed books URL path",
        with_change("proxy.booksUrlPath", "/pdf/"),
        "settings.proxy.booksUrlPath",
        "the urlPath of the entry named books",
    ),
    (
        "repeated data directory name",
        with_change("app.dataDirs", [DATA_DIR, {**DATA_DIR, "path": "/app/other"}]),
        "settings.app.dataDirs[1].name",
        "repeats dataDirs[0].name",
    ),
    (
        "data directory inside another",
        with_change("app.dataDirs", [DATA_DIR, {"name": "nested", "path": "/app/public/covers/big"}]),
        "settings.app.dataDirs[1].path",
        "overlaps dataDirs[0].path",
    ),
    (
        "data directory on the tmpfs",
        with_change("app.dataDirs", [{"name": "scratch", "path": "/app/tmp/keep"}]),
        "settings.app.dataDirs[0].path",
        "overlaps tmpPath",
    ),
    (
        "data directory served over the API",
        with_change("app.dataDirs", [{**DATA_DIR, "urlPath": "/api/covers/"}]),
        "settings.app.dataDirs[0].urlPath",
        "the app's own routes",
    ),
    (
        "repeated data URL path",
        with_change("app.dataDirs", [DATA_DIR, {"name": "b", "path": "/app/b", "urlPath": "/covers/"}]),
        "settings.app.dataDirs[1].urlPath",
        "repeats dataDirs[0].urlPath",
    ),
    (
        "data directory named like a backup source",
        with_change("app.dataDirs", [{**DATA_DIR, "name": "certificates"}]),
        "settings.app.dataDirs[0].name",
        "reserved",
    ),
    (
        "pinned app without a migration image",
        {"domain": "stories.example.org", "app": {"image": "ghcr.io/1001-stories/app:1.0.0"}},
        "settings.app.migration.image",
        "prisma CLI is a devDependency",
    ),
    ("empty migration command", with_change("app.migration.command", []), "settings.app.migration.command", "1 item"),
    (
        "empty word in the migration command",
        with_change("app.migration.command", ["npx", ""]),
        "settings.app.migration.command[1]",
        "at least 1 character",
    ),
    (
        "unpinned migration image",
        with_change("app.migration.image", "ghcr.io/1001-stories/app-migrate:latest"),
        "settings.app.migration.image",
        "not a version",
    ),
    (
        "cron schedule out of range",
        with_change("cron.jobs", [{**CRON_JOB, "schedule": "0 25 * * *"}]),
        "settings.cron.jobs[0].schedule",
        "hour: 25 is outside 0-23",
    ),
    (
        "cron schedule that never fires",
        with_change("cron.jobs", [{**CRON_JOB, "schedule": "0 3 31 2 *"}]),
        "settings.cron.jobs[0].schedule",
        "never fires",
    ),
    (
        "repeated cron job",
        with_change("cron.jobs", [CRON_JOB, CRON_JOB]),
        "settings.cron.jobs[1].name",
        "repeats jobs[0].name",
    ),
    ("cron time zone", with_change("cron.timezone", "Europe/Atlantis"), "settings.cron.timezone", "IANA"),
    ("cron secret in env", with_change("app.env", {"CRON_SECRET": "x"}), "settings.app.env.CRON_SECRET", "platform"),
]


@pytest.mark.parametrize(("case", "config", "path", "rule"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_names_the_exact_key(case: str, config: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    rules = [problem.rule for problem in raised.value.problems if problem.path == path]
    assert any(rule in each for each in rules), str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_a_key_shared_by_containers_is_named_once() -> None:
    config = with_change("monitoring.resources.exporter", {"memoryMb": 64, "memoryReservationMb": 16, "cpus": 6})
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    paths = [problem.path for problem in raised.value.problems]
    assert paths.count("settings.monitoring.resources.exporter.cpus") == 1, paths


def test_a_message_names_the_value() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(with_change("pgbouncer.defaultPoolSize", 5000))
    (problem,) = raised.value.problems
    assert problem.path == "settings.pgbouncer.defaultPoolSize"
    assert problem.value == 5000
    assert "1000" in problem.rule


def test_settings_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="must be an object"):
        load_settings(None)


def test_referenced_secret_that_exists_is_accepted() -> None:
    settings = load_settings(with_change("app.secretEnv", ["SMTP_PASSWORD"]), secret_names={"SMTP_PASSWORD"})
    assert settings.app.secret_env == ["SMTP_PASSWORD"]
