"""Postgres, PgBouncer and Redis started on loopback with the rendered files, as the stack deploys
them. Each `start_*` returns a handle; `stop()` ends the server. Secrets are generated per run."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from components.settings import Settings
from configs.credentials import redis_acl_hash, scram_sha256_verifier
from configs.render import (
    ServerVersions,
    render_pgbouncer,
    render_pgbouncer_userlist,
    render_postgres,
    render_redis,
    render_redis_acl,
)
from configs.topology import ROLES, LoopbackPorts, Topology, loopback_topology
from harness.servers import (
    PG_BIN,
    Server,
    User,
    copy,
    free_port,
    installed_versions,
    make_certificates,
    run_as,
    service_user,
    which,
    write,
)


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Environment:
    settings: Settings
    topo: Topology
    versions: ServerVersions
    base: Path
    certs: dict[str, Path]
    passwords: dict[str, str]


@contextmanager
def environment(settings: Settings) -> Iterator[Environment]:
    """A private directory, free ports, a test CA and fresh passwords; removed afterwards."""
    # Not pytest's tmp_path: its parents are private to the test runner, and the servers run as
    # their own unprivileged users.
    base = Path(tempfile.mkdtemp(prefix="stories-"))
    base.chmod(0o755)
    ports = LoopbackPorts(
        postgres=free_port(), pgbouncer=free_port(), redis=free_port(), nginx_http=free_port(),
        nginx_https=free_port(), nginx_status=free_port(), app_upstreams=(free_port(), free_port()),
    )  # fmt: skip
    certs = make_certificates(base / "certs", ["127.0.0.1", "localhost"], ROLES["auth"])
    names = ("app", "monitor", "admin", "stats", "superuser", "redis_app", "redis_exporter", "redis_healthcheck")
    yield Environment(
        settings, loopback_topology(settings, base, ports), installed_versions(), base, certs,
        {name: new_password() for name in names},
    )  # fmt: skip
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Postgres:
    env: Environment
    server: Server
    user: User
    data: Path

    def dsn(self, user: str, password: str | None = None, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.env.topo.postgres_port), "user": user,
                 "dbname": self.env.settings.database.name, "sslmode": "require", **extra}  # fmt: skip
        if password is not None:
            parts["password"] = password
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def superuser(self) -> str:
        return self.dsn("postgres", self.env.passwords["superuser"], dbname="postgres")

    def start(self) -> None:
        self.server.start()
        self.server.wait_for_port(self.env.topo.postgres_port)

    def stop(self) -> None:
        run_as(self.user, [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        self.server.stop()


def start_postgres(env: Environment) -> Postgres:
    """initdb, the rendered postgresql.conf and pg_hba.conf, then the init SQL as the image runs it."""
    topo = env.topo
    user = service_user("postgres")
    files = render_postgres(env.settings, topo, env.versions)
    config_dir, secrets_dir = Path(topo.postgres_config_dir), Path(topo.postgres_secrets_dir)
    for name in ("postgresql.conf", "pg_hba.conf"):
        write(config_dir / name, files[name])
    write(secrets_dir / "app.scram", scram_sha256_verifier(env.passwords["app"], secrets.token_bytes(16)), 0o600)
    write(
        secrets_dir / "monitor.scram", scram_sha256_verifier(env.passwords["monitor"], secrets.token_bytes(16)), 0o600
    )
    for name, mode in (("server.crt", 0o644), ("server.key", 0o600), ("ca.crt", 0o644)):
        copy(env.certs[name], secrets_dir / name, mode)
    init_sql = write(env.base / "postgres-init" / "init.sql", files["init.sql"])
    data = env.base / "postgres-data"
    data.mkdir(mode=0o700)
    Path(topo.postgres_socket_dir).mkdir()
    password_file = write(env.base / "postgres-init" / "superuser.password", env.passwords["superuser"] + "\n", 0o600)
    user.own(config_dir, secrets_dir, data, Path(topo.postgres_socket_dir), init_sql.parent)
    initdb = run_as(user, [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=peer",
                           f"--pwfile={password_file}", "--encoding=UTF8"])  # fmt: skip
    assert initdb.returncode == 0, initdb.stderr
    log = env.base / "postgres.log"
    server = Server(
        "postgres", [str(PG_BIN / "postgres"), "-D", str(data), "-c", f"config_file={config_dir}/postgresql.conf"],
        user, log,
    )  # fmt: skip
    pg = Postgres(env, server, user, data)
    pg.start()
    # What the image's entrypoint does on first start: run the init scripts as the superuser over the socket.
    init = run_as(user, ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", topo.postgres_socket_dir, "-p",
                         str(topo.postgres_port), "-U", "postgres", "-d", "postgres", "-f", str(init_sql)])  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr + server.log()
    return pg


@dataclass
class PgBouncer:
    env: Environment
    server: Server
    passfile: Path

    def stop(self) -> None:
        self.server.stop(2)  # SIGINT, the stop signal the container uses

    def dsn(self, user: str, password: str, dbname: str | None = None) -> str:
        db = dbname or self.env.settings.database.name
        return f"host=127.0.0.1 port={self.env.topo.pgbouncer_port} user={user} password={password} dbname={db}"


def start_pgbouncer(env: Environment) -> PgBouncer:
    topo = env.topo
    user = service_user("postgres")
    config_dir = Path(topo.pgbouncer_config_dir)
    ini = write(config_dir / "pgbouncer.ini", render_pgbouncer(env.settings, topo, env.versions)["pgbouncer.ini"])
    verifiers = {
        ROLES["pgbouncer_admin"]: scram_sha256_verifier(env.passwords["admin"], secrets.token_bytes(16)),
        ROLES["pgbouncer_stats"]: scram_sha256_verifier(env.passwords["stats"], secrets.token_bytes(16)),
    }
    write(config_dir / "userlist.txt", render_pgbouncer_userlist(verifiers), 0o600)
    for name, target, mode in (("ca.crt", "ca.crt", 0o644), ("client.crt", "client.crt", 0o644),
                               ("client.key", "client.key", 0o600)):  # fmt: skip
        copy(env.certs[name], config_dir / target, mode)
    passfile = write(
        env.base / "pgbouncer-health" / "pgpass",
        f"127.0.0.1:{topo.pgbouncer_port}:pgbouncer:{ROLES['pgbouncer_stats']}:{env.passwords['stats']}\n",
        0o600,
    )
    user.own(config_dir)
    server = Server("pgbouncer", ["pgbouncer", str(ini)], user, env.base / "pgbouncer.log").start()
    server.wait_for_port(topo.pgbouncer_port)
    return PgBouncer(env, server, passfile)


@dataclass
class Redis:
    env: Environment
    server: Server
    user: User
    conf: Path

    def start(self) -> None:
        self.server = Server("redis", ["redis-server", str(self.conf)], self.user, self.server.log_path).start()
        self.server.wait_for_port(self.env.topo.redis_port)

    def stop(self) -> None:
        self.server.stop()


def start_redis(env: Environment) -> Redis:
    topo = env.topo
    user = service_user("redis")
    config_dir, data_dir = Path(topo.redis_config_dir), Path(topo.redis_data_dir)
    conf = write(config_dir / "redis.conf", render_redis(env.settings, topo, env.versions)["redis.conf"])
    hashes = {
        "app": redis_acl_hash(env.passwords["redis_app"]),
        "exporter": redis_acl_hash(env.passwords["redis_exporter"]),
        "healthcheck": redis_acl_hash(env.passwords["redis_healthcheck"]),
    }
    write(config_dir / "users.acl", render_redis_acl(hashes), 0o600)
    data_dir.mkdir()
    user.own(config_dir, data_dir)
    redis = Redis(env, Server("redis", [], user, env.base / "redis.log"), user, conf)
    redis.start()
    return redis


def start_prometheus(base: Path, targets: list[str], scrape_interval_seconds: int = 1) -> tuple[Server, int]:
    """Debian's Prometheus scraping `targets` (host:port) often, with its data under `base`."""
    import yaml

    user = service_user("prometheus")
    directory = base / f"prometheus-{free_port()}"
    port = free_port()
    config = {
        "global": {
            "scrape_interval": f"{scrape_interval_seconds}s",
            "evaluation_interval": f"{scrape_interval_seconds}s",
        },
        "scrape_configs": [{"job_name": "signals", "static_configs": [{"targets": targets}]}],
    }
    write(directory / "prometheus.yml", yaml.safe_dump(config))
    (directory / "data").mkdir()
    user.own(directory)
    server = Server(
        "prometheus",
        [which("prometheus"), f"--config.file={directory}/prometheus.yml", f"--storage.tsdb.path={directory}/data",
         f"--web.listen-address=127.0.0.1:{port}"],
        user, directory / "prometheus.log",
    ).start()  # fmt: skip
    server.wait_for_port(port, timeout=30)
    return server, port
