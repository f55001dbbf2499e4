"""Settings validation: the guide's defaults, and bad configs that each fail with one clear message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from model.loading import ConfigError, load_settings
from model.tuning import container_budget, postgres_tuning, required_max_connections
from tools.plan import STACKS, settings_for

MINIMAL: dict[str, Any] = {"domain": "stories.example.org", "app": {"image": "ghcr.io/1001-stories/app:1.0.0"}}


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
    resources, count = container_budget(settings)["app"]
    assert count == 3 and resources.memory_mb == 1024


BAD_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, config, key path in the message, rule fragment in the message)
    ("unknown key", with_change("database.sharedBuffersMb", 128), "settings.database.sharedBuffersMb", "unknown key"),
    ("wrong type", with_change("app.replicas", "two"), "settings.app.replicas", "valid integer"),
    ("replicas above max", with_change("app.replicas", 4), "settings.app", "must not exceed maxReplicas"),
    ("replicas zero", with_change("app.replicas", 0), "settings.app.replicas", "greater than or equal to 1"),
    ("floating tag", with_change("images.redis", "redis:alpine"), "settings.images.redis", "not a version"),
    ("no tag", with_change("images.nginx", "nginx"), "settings.images.nginx", "explicit version tag"),
    ("postgres major", with_change("images.postgres", "postgres:16.4"), "settings.images", "PostgreSQL 15"),
    (
        "image and build",
        with_change("app.build", {"context": ".", "imageName": "a:1.0"}),
        "settings.app",
        "exactly one",
    ),
    ("bad domain", with_change("domain", "Stories_Example"), "settings.domain", "DNS name"),
    (
        "reservation above limit",
        with_change("redis.resources", {"memoryMb": 512, "memoryReservationMb": 1024, "cpus": 0.25}),
        "settings.redis.resources",
        "must not exceed memoryMb",
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
    ("min pool above default", with_change("pgbouncer.minPoolSize", 30), "settings.pgbouncer", "minPoolSize"),
    ("unknown pool mode", with_change("pgbouncer.poolMode", "statement"), "settings.pgbouncer.poolMode", "transaction"),
    ("acme without email", with_change("proxy.tls", {"mode": "letsencrypt"}), "settings.proxy.tls", "email"),
    ("missing secret", with_change("app.secretEnv", ["SMTP_PASSWORD"]), "settings.app.secretEnv", "no such secret"),
    (
        "managed env",
        with_change("app.env", {"DATABASE_URL": "x"}),
        "settings.app.env.DATABASE_URL",
        "set by the platform",
    ),
    ("bad docker host", with_change("host.dockerHost", "deploy@host"), "settings.host", "ssh://user@host"),
    (
        "overlapping subnets",
        with_change("networks.data", "172.30.1.0/24"),
        "settings.networks",
        "overlap",
    ),
    (
        "expiring a tool prefix",
        with_change("backup.s3", {"enabled": True, "expireCurrentPrefixes": ["restic/"]}),
        "settings.backup.s3",
        "owned by a backup tool",
    ),
    (
        "grafana without monitoring",
        with_change("monitoring", {"enabled": False, "grafana": {"enabled": True}}),
        "settings.monitoring",
        "needs monitoring.enabled",
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
        "settings.backup.s3",
        "writerTrusted",
    ),
]


@pytest.mark.parametrize(("case", "config", "path", "rule"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_is_one_clear_message(case: str, config: dict[str, Any], path: str, rule: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert path in message, message
    assert rule in message, message
    assert "Traceback" not in message


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
