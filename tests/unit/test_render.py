"""The renderers: version-specific keys, derived values, and files that must never hold a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from configs import monitoring
from configs.credentials import redis_acl_hash, scram_sha256_verifier
from configs.render import (
    ServerVersions,
    TemplateCache,
    image_versions,
    render_nginx,
    render_pgbouncer,
    render_pgbouncer_userlist,
    render_postgres,
    render_redis,
)
from model.loading import load_settings
from model.settings import Settings
from model.topology import LoopbackPorts, container_topology, loopback_topology
from tests.unit.test_settings import MINIMAL, with_change

SETTINGS = load_settings(MINIMAL)
TOPO = container_topology(SETTINGS)
LOOPBACK = loopback_topology(SETTINGS, Path("/t"), LoopbackPorts(1, 2, 3, 4, 5, 6, (7, 8)))
PINNED = image_versions(SETTINGS)
DEBIAN = ServerVersions(postgres=(15,), pgbouncer=(1, 18, 0), redis=(7, 0, 15), nginx=(1, 22, 1))


def test_pgbouncer_keys_follow_the_version() -> None:
    assert PINNED.pgbouncer >= (1, 21)
    assert "max_prepared_statements = 100" in render_pgbouncer(SETTINGS, TOPO, PINNED)["pgbouncer.ini"]
    assert "max_prepared_statements" not in render_pgbouncer(SETTINGS, TOPO, DEBIAN)["pgbouncer.ini"]


def test_nginx_directives_follow_the_version() -> None:
    pinned = render_nginx(SETTINGS, TOPO, PINNED)["nginx.conf"]
    assert "http2 on;" in pinned and "resolver 127.0.0.11" in pinned
    # One upstream name, the alias every replica has: Docker's DNS answers with the running ones.
    assert re.search(r"server app:3000 max_fails=2 fail_timeout=10s resolve;", pinned)
    assert "$app_backend" not in pinned
    # Before 1.27.3 an upstream block resolves once: the app's name goes through a variable, resolved by
    # Docker's DNS per request (every proxy_pass to the app uses it), and no upstream block is written.
    old = render_nginx(SETTINGS, TOPO, DEBIAN)["nginx.conf"]
    assert "http2 on;" not in old and " resolve;" not in old and "upstream app_upstream" not in old
    assert "resolver 127.0.0.11 valid=5s" in old and "set $app_backend app:3000;" in old
    assert old.count("proxy_pass http://$app_backend;") == pinned.count("proxy_pass http://app_upstream;") > 0
    # On loopback (the integration tests' topology: fixed ports, no resolver) the upstream block stays.
    loopback = render_nginx(SETTINGS, LOOPBACK, DEBIAN)["nginx.conf"]
    assert "upstream app_upstream" in loopback and "$app_backend" not in loopback
    assert not re.search(r"^\s*resolver ", loopback, re.MULTILINE)


def test_nginx_rates_and_limits_come_from_settings() -> None:
    settings = load_settings(
        with_change("proxy", {"rateLimits": {"apiPerSecond": 7, "authPerMinute": 12}, "clientMaxBodyMb": 80})
    )
    conf = render_nginx(settings, container_topology(settings), PINNED)["nginx.conf"]
    assert "zone=api:10m rate=7r/s" in conf and "zone=auth:10m rate=12r/m" in conf
    assert "client_max_body_size 80m;" in conf


@pytest.mark.parametrize(
    ("persistence", "present", "absent"),
    [
        ("none", ['save ""', "appendonly no"], ["save 900"]),
        ("rdb", ["save 900 1 300 10 60 10000", "appendonly no"], []),
        ("aof", ['save ""', "appendonly yes", "appendfsync everysec"], []),
        ("rdb+aof", ["save 900 1", "appendonly yes"], []),
    ],
)
def test_redis_persistence(persistence: str, present: list[str], absent: list[str]) -> None:
    settings = load_settings(with_change("redis.persistence", persistence))
    conf = render_redis(settings, container_topology(settings), PINNED)["redis.conf"]
    for line in present:
        assert line in conf
    for line in absent:
        assert line not in conf
    assert "maxmemory 256mb" in conf and "maxmemory-policy allkeys-lru" in conf


def test_postgres_files_hold_no_secret_and_use_the_data_network() -> None:
    files = render_postgres(SETTINGS, TOPO, PINNED)
    assert "PASSWORD :'app_verifier'" in files["init.sql"]
    assert "`cat /etc/stories/postgres-secrets/app.scram`" in files["init.sql"]
    assert not re.search(r"PASSWORD '", files["init.sql"])
    assert "hostssl   all       all   172.30.3.0/24  scram-sha-256" in files["pg_hba.conf"]
    assert " trust" not in files["pg_hba.conf"] and " md5" not in files["pg_hba.conf"]


def test_scram_verifier_is_rfc5802_and_deterministic() -> None:
    password, salt = "pencil-" + "0" * 8, bytes(range(16))
    verifier = scram_sha256_verifier(password, salt)
    match = re.fullmatch(r"SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)", verifier)
    assert match and base64.b64decode(match.group(1)) == salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(match.group(2)) == hashlib.sha256(client_key).digest()
    assert scram_sha256_verifier(password, salt) == verifier
    assert scram_sha256_verifier(password, bytes(16)) != verifier
    with pytest.raises(ValueError, match="at least 16 bytes"):
        scram_sha256_verifier(password, b"short")
    assert redis_acl_hash("x") == hashlib.sha256(b"x").hexdigest()


def test_userlist_refuses_plaintext() -> None:
    verifier = scram_sha256_verifier("p" * 12, bytes(16))
    assert render_pgbouncer_userlist({"pgbouncer_stats": verifier}) == f'"pgbouncer_stats" "{verifier}"\n'
    with pytest.raises(ValueError, match="must be a SCRAM-SHA-256 verifier"):
        render_pgbouncer_userlist({"pgbouncer_stats": "plain-password"})


def test_alertmanager_without_receivers_keeps_alerts() -> None:
    document = yaml.safe_load(monitoring.render_alertmanager(SETTINGS, {}))
    assert document["route"]["receiver"] == "blackhole" and "routes" not in document["route"]
    assert document["receivers"] == [{"name": "blackhole"}]


def test_loopback_topology_changes_only_hosts_ports_and_paths() -> None:
    loop = LOOPBACK
    deployed = render_pgbouncer(SETTINGS, TOPO, PINNED)["pgbouncer.ini"].splitlines()
    tested = render_pgbouncer(SETTINGS, loop, PINNED)["pgbouncer.ini"].splitlines()
    differing = [(a, b) for a, b in zip(deployed, tested, strict=True) if a != b]
    for deployed_line, tested_line in differing:
        key = deployed_line.split("=")[0].strip()
        assert key in {
            "stories_db",
            "listen_addr",
            "listen_port",
            "auth_file",
            "server_tls_ca_file",
            "server_tls_cert_file",
            "server_tls_key_file",
            "client_tls_cert_file",
            "client_tls_key_file",
        }, (deployed_line, tested_line)
    assert differing, "the loopback layout does move hosts, ports and paths"


def test_app_metrics_are_scraped_only_when_the_app_exports_them() -> None:
    def jobs(settings_: Settings) -> dict[str, dict[str, object]]:
        document = yaml.safe_load(monitoring.render_prometheus(settings_))
        return {job["job_name"]: job for job in document["scrape_configs"]}

    assert "app" not in jobs(SETTINGS)
    exporting = load_settings(with_change("app.metricsPath", "/api/metrics"))
    app = jobs(exporting)["app"]
    assert app["metrics_path"] == "/api/metrics"
    # Found by DNS, so a replica the scaler keeps stopped is not a target that is down.
    assert app["dns_sd_configs"] == [{"names": ["app"], "type": "A", "port": 3000, "refresh_interval": "15s"}]
    assert "static_configs" not in app


def _cached_env(templates: Path, cache: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates), bytecode_cache=TemplateCache(cache))


def test_compiled_templates_are_reused_until_their_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates, cache = tmp_path / "templates", tmp_path / "templates" / "__pycache__"
    templates.mkdir()
    (templates / "a.conf.j2").write_text("port = {{ port }}")
    assert _cached_env(templates, cache).get_template("a.conf.j2").render(port=1) == "port = 1"
    assert len(list(cache.iterdir())) == 1  # the directory is made on the first write

    compiled: list[str] = []
    compile_ = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None, *args: object) -> object:
        compiled.append(str(name))
        return compile_(self, source, name, *args)  # type: ignore[call-overload]

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    assert _cached_env(templates, cache).get_template("a.conf.j2").render(port=2) == "port = 2"
    assert compiled == []  # another process (a new environment) loads the compiled code
    (templates / "a.conf.j2").write_text("listen = {{ port }}")
    assert _cached_env(templates, cache).get_template("a.conf.j2").render(port=3) == "listen = 3"
    assert compiled == ["a.conf.j2"]


def test_templates_render_where_the_cache_cannot_be_written(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "a.conf.j2").write_text("port = {{ port }}")
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the cache's directory can be neither read nor made, whoever runs the test
    env = _cached_env(templates, blocked / "__pycache__")
    assert env.get_template("a.conf.j2").render(port=1) == "port = 1"
