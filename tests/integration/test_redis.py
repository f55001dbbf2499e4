"""Redis with the rendered config and ACL file: authentication, bounded memory, persistence, health."""

from __future__ import annotations

import os
import subprocess

import pytest
import redis

from configs import healthchecks
from harness.services import Redis

pytestmark = pytest.mark.integration


def client(server: Redis, user: str | None = "default", password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=server.env.topo.redis_port,
        username=user,
        password=password if password is not None else server.env.passwords["redis_app"],
        socket_timeout=5,
    )


def test_unauthenticated_commands_are_refused(redis_server: Redis) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.env.topo.redis_port, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("anything")
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(redis_server, password="wrong-" + redis_server.env.passwords["redis_app"]).ping()
    assert client(redis_server).ping() is True


def test_users_have_only_their_commands(redis_server: Redis) -> None:
    app = client(redis_server)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.config_set("maxmemory", "1gb")
    exporter = client(redis_server, "exporter", redis_server.env.passwords["redis_exporter"])
    assert "used_memory" in exporter.info("memory")
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.get("session:1")
    health = client(redis_server, "healthcheck", redis_server.env.passwords["redis_healthcheck"])
    assert health.ping() is True
    with pytest.raises(redis.exceptions.NoPermissionError):
        health.info()


def test_maxmemory_evicts_instead_of_failing(redis_server: Redis) -> None:
    settings = redis_server.env.settings.redis
    exporter = client(redis_server, "exporter", redis_server.env.passwords["redis_exporter"])
    config = exporter.config_get("maxmemory*")
    assert int(str(config["maxmemory"])) == settings.maxmemory_mb * 1024 * 1024
    assert config["maxmemory-policy"] == settings.maxmemory_policy
    app = client(redis_server)
    value = b"x" * 64 * 1024
    total = settings.maxmemory_mb * 13 // 10 * 1024 * 1024 // len(value)  # write 30% more than fits
    pipe = app.pipeline(transaction=False)
    for index in range(total):
        pipe.set(f"pressure:{index}", value)
        if index % 500 == 499:
            pipe.execute()
    pipe.execute()
    stats = exporter.info("stats")
    memory = exporter.info("memory")
    assert stats["evicted_keys"] > 0
    assert memory["used_memory"] <= settings.maxmemory_mb * 1024 * 1024 * 1.05
    assert app.dbsize() < total
    app.flushdb()


def test_data_survives_a_restart(redis_server: Redis) -> None:
    settings = redis_server.env.settings.redis
    assert settings.persistence != "none", "the stack under test persists Redis"
    app = client(redis_server)
    app.set("session:restart-check", "still here")
    # The container stops with SIGTERM: Redis saves on shutdown when persistence is on.
    redis_server.server.stop()
    redis_server.start()
    assert client(redis_server).get("session:restart-check") == b"still here"


def test_healthcheck_command_succeeds_and_fails_on_wrong_password(redis_server: Redis) -> None:
    command = healthchecks.redis(redis_server.env.topo)
    good = {**os.environ, "REDISCLI_AUTH": redis_server.env.passwords["redis_healthcheck"]}
    assert subprocess.run(command, env=good, capture_output=True, timeout=10, check=False).returncode == 0
    bad = {**os.environ, "REDISCLI_AUTH": "wrong"}
    assert subprocess.run(command, env=bad, capture_output=True, timeout=10, check=False).returncode != 0
