"""Postgres, PgBouncer and Redis started on loopback with the rendered files, as the stack deploys
them. Each `start_*` returns a handle; `stop()` ends the server and everything it started, in bounded
time. Secrets are generated per run."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.credentials import redis_acl_hash, scram_sha256_verifier
from configs.render import (
    ServerVersions,
    render_pgbackrest,
    render_pgbouncer,
    render_pgbouncer_userlist,
    render_postgres,
    render_redis,
    render_redis_acl,
)
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
    stop_running,
    which,
    write,
)
from model.settings import Settings
from model.topology import ROLES, LoopbackPorts, Topology, loopback_topology


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
    s3_port: int
    bucket: str = "stories-backup-test"

    def backup_env(self) -> dict[str, str]:
        """What the backup container gets from the program: secrets and the bucket, by environment.
        The local S3-compatible server accepts any key pair; these are the test's own."""
        return {
            "PGBACKREST_REPO1_CIPHER_PASS": self.passwords["pgbackrest_cipher"],
            "PGBACKREST_REPO1_S3_BUCKET": self.bucket,
            "PGBACKREST_REPO1_S3_KEY": "test-key-id",
            "PGBACKREST_REPO1_S3_KEY_SECRET": self.passwords["s3_secret"],
            "RESTIC_PASSWORD": self.passwords["restic"],
            "AWS_ACCESS_KEY_ID": "test-key-id",
            "AWS_SECRET_ACCESS_KEY": self.passwords["s3_secret"],
            "STORIES_BACKUP_BUCKET": self.bucket,
            "STORIES_REDIS_BACKUP_PASSWORD": self.passwords["redis_backup"],
        }


@contextmanager
def environment(settings: Settings) -> Iterator[Environment]:
    """A private directory, free ports, a test CA and fresh passwords; removed afterwards, with any
    server still running there (a failed or interrupted caller may not have stopped it)."""
    # Not pytest's tmp_path: its parents are private to the test runner, and the servers run as
    # their own unprivileged users.
    base = Path(tempfile.mkdtemp(prefix="stories-"))
    try:
        yield _new_environment(settings, base)
    finally:
        stop_running(under=base)
        shutil.rmtree(base, ignore_errors=True)


def _new_environment(settings: Settings, base: Path) -> Environment:
    base.chmod(0o755)
    ports = LoopbackPorts(
        postgres=free_port(),
        pgbouncer=free_port(),
        redis=free_port(),
        nginx_http=free_port(),
        nginx_https=free_port(),
        nginx_status=free_port(),
        app_upstreams=(free_port(), free_port()),
    )
    certs = make_certificates(base / "certs", ["127.0.0.1", "localhost"], ROLES["auth"])
    names = (
        "app",
        "monitor",
        "admin",
        "stats",
        "superuser",
        "redis_app",
        "redis_exporter",
        "redis_healthcheck",
        "redis_backup",
        "pgbackrest_cipher",
        "restic",
        "s3_secret",
    )
    s3_port = free_port()
    topo = loopback_topology(settings, base, ports, s3_endpoint=f"127.0.0.1:{s3_port}", ca_file=str(certs["ca.crt"]))
    return Environment(
        settings, topo, installed_versions(), base, certs, {name: new_password() for name in names}, s3_port
    )


FAST_SHUTDOWN_SECONDS = 15.0
"""How long `Postgres.stop` waits for a fast shutdown before an immediate one."""


@dataclass
class Postgres:
    env: Environment
    server: Server
    user: User
    data: Path

    def dsn(self, user: str, password: str | None = None, **extra: str) -> str:
        parts = {
            "host": "127.0.0.1",
            "port": str(self.env.topo.postgres_port),
            "user": user,
            "dbname": self.env.settings.database.name,
            "sslmode": "require",
            **extra,
        }
        if password is not None:
            parts["password"] = password
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def superuser(self) -> str:
        return self.dsn("postgres", self.env.passwords["superuser"], dbname="postgres")

    def socket_args(self) -> list[str]:
        """A client's options for the superuser over the server's socket (peer authentication): run as
        `user`, as `docker exec` runs the image's init scripts and an operator's commands."""
        return ["-h", self.env.topo.postgres_socket_dir, "-p", str(self.env.topo.postgres_port), "-U", "postgres"]

    def start(self) -> None:
        self.server.start()
        self.server.wait_for_port(self.env.topo.postgres_port)

    def stop(self, fast_seconds: float = FAST_SHUTDOWN_SECONDS, immediate_seconds: float = 5) -> None:
        """A fast shutdown (SIGINT, as `pg_ctl -m fast`), after `fast_seconds` an immediate one (SIGQUIT),
        after `immediate_seconds` SIGKILL to the postmaster and every process it started; returns within
        their sum plus a few seconds. A fast shutdown waits for the archiver, and an `archive_command`
        that cannot reach its repository retries for minutes; the immediate one does not wait."""
        self.server.stop_escalating([(signal.SIGINT, fast_seconds), (signal.SIGQUIT, immediate_seconds)])


def start_postgres(env: Environment, archiving: bool = True) -> Postgres:
    """initdb, the rendered postgresql.conf and pg_hba.conf, then the init SQL as the image runs it.

    `archiving=False` starts the server with `-c archive_mode=off` (the rendered file stays as deployed),
    for callers that start no S3 repository: the deployed `archive_command` would retry against it."""
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
    write(
        Path(topo.pgbackrest_config_dir) / "pgbackrest.conf", render_pgbackrest(env.settings, topo)["pgbackrest.conf"]
    )
    for directory in (topo.pgbackrest_lock_dir, topo.backup_work_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
    data = env.base / "postgres-data"
    data.mkdir(mode=0o700)
    Path(topo.postgres_socket_dir).mkdir()
    password_file = write(env.base / "postgres-init" / "superuser.password", env.passwords["superuser"] + "\n", 0o600)
    user.own(
        config_dir,
        secrets_dir,
        data,
        Path(topo.postgres_socket_dir),
        init_sql.parent,
        Path(topo.pgbackrest_config_dir),
        Path(topo.pgbackrest_lock_dir),
        Path(topo.backup_work_dir),
    )
    initdb = run_as(
        user,
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=peer",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
        ],
    )
    assert initdb.returncode == 0, initdb.stderr
    log = env.base / "postgres.log"
    # The archive_command's pgBackRest reads its secrets and bucket from the server's environment, as
    # in the container.
    argv = [str(PG_BIN / "postgres"), "-D", str(data), "-c", f"config_file={config_dir}/postgresql.conf"]
    server = Server(
        "postgres",
        argv if archiving else [*argv, "-c", "archive_mode=off"],
        user,
        log,
        env={**os.environ, **env.backup_env()},
        stop_steps=[(signal.SIGINT, FAST_SHUTDOWN_SECONDS), (signal.SIGQUIT, 5.0)],
    )
    pg = Postgres(env, server, user, data)
    pg.start()
    # What the image's entrypoint does on first start: run the init scripts as the superuser over the socket.
    init = run_as(
        user,
        [
            "psql",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            *pg.socket_args(),
            "-d",
            "postgres",
            "-f",
            str(init_sql),
        ],
    )
    assert init.returncode == 0, init.stdout + init.stderr + server.log()
    return pg


@dataclass
class PgBouncer:
    env: Environment
    server: Server
    passfile: Path

    def stop(self) -> None:
        self.server.stop()  # SIGINT, the stop signal the container uses, then SIGKILL

    def dsn(self, user: str, password: str, dbname: str | None = None, sslmode: str = "verify-full") -> str:
        """As the app connects: TLS, PgBouncer's certificate checked against the stack's CA."""
        db = dbname or self.env.settings.database.name
        return (
            f"host=127.0.0.1 port={self.env.topo.pgbouncer_port} user={user} password={password} dbname={db} "
            f"sslmode={sslmode} sslrootcert={self.env.certs['ca.crt']}"
        )


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
    for name, target, mode in (
        ("ca.crt", "ca.crt", 0o644),
        ("client.crt", "client.crt", 0o644),
        ("client.key", "client.key", 0o600),
        ("server.crt", "server.crt", 0o644),
        ("server.key", "server.key", 0o600),
    ):
        copy(env.certs[name], config_dir / target, mode)
    passfile = write(
        env.base / "pgbouncer-health" / "pgpass",
        f"127.0.0.1:{topo.pgbouncer_port}:pgbouncer:{ROLES['pgbouncer_stats']}:{env.passwords['stats']}\n",
        0o600,
    )
    user.own(config_dir)
    server = Server(
        "pgbouncer", ["pgbouncer", str(ini)], user, env.base / "pgbouncer.log", stop_steps=[(signal.SIGINT, 20.0)]
    ).start()
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
        "backup": redis_acl_hash(env.passwords["redis_backup"]),
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
        [
            which("prometheus"),
            f"--config.file={directory}/prometheus.yml",
            f"--storage.tsdb.path={directory}/data",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        user,
        directory / "prometheus.log",
    ).start()
    server.wait_for_port(port, timeout=30)
    return server, port


S3_TLS_FRONT = """
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        proxy_request_buffering off;
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


@dataclass
class S3:
    """moto's S3-compatible server behind nginx for TLS. moto's own TLS ends connections without a TLS
    close_notify, which pgBackRest (OpenSSL 3) rightly refuses; nginx ends them properly."""

    moto: Server
    tls: Server

    def stop(self) -> None:
        self.tls.stop()
        self.moto.stop()


def start_s3(env: Environment) -> S3:
    """The S3-compatible endpoint on loopback over TLS, with the stack's bucket created."""
    import boto3

    backend = free_port()
    moto_server = str(Path(sys.executable).parent / "moto_server")  # installed with requirements-dev.txt
    moto = Server(
        "s3", [moto_server, "-H", "127.0.0.1", "-p", str(backend)], service_user("root"), env.base / "s3.log"
    ).start()
    moto.wait_for_port(backend, timeout=30)
    run = env.base / "s3-tls"
    run.mkdir()
    user = service_user("www-data")
    key = run / "server.key"
    copy(env.certs["server.key"], key, 0o600)
    config = write(
        run / "nginx.conf",
        S3_TLS_FRONT.format(run=run, port=env.s3_port, cert=env.certs["server.crt"], key=key, backend=backend),
    )
    user.own(run)
    tls = Server(
        "s3-tls",
        ["nginx", "-e", str(run / "error.log"), "-c", str(config), "-g", "daemon off;"],
        user,
        run / "console.log",
    ).start()
    tls.wait_for_port(env.s3_port)
    region = env.topo.backup_repo.s3_region or "eu-west-1"
    s3_client(env, boto3).create_bucket(Bucket=env.bucket, CreateBucketConfiguration={"LocationConstraint": region})
    return S3(moto, tls)


def s3_client(env: Environment, boto3: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{env.s3_port}",
        region_name=env.topo.backup_repo.s3_region,
        aws_access_key_id="test-key-id",
        aws_secret_access_key=env.passwords["s3_secret"],
        verify=str(env.certs["ca.crt"]),
    )


class BackupCli:
    """The backup command line run as the database's own user (as in the backup container), with the
    system Python and a private copy of the packages it imports (the test runner's virtualenv may sit
    where that user cannot read)."""

    PACKAGES = (
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "prometheus_client",
    )

    def __init__(self, env: Environment, stack: str, settings: Settings | None = None) -> None:
        from configs.backup import render_backup_config

        self.env = env
        self.user = service_user("postgres")
        self.runtime = env.base / "backup-cli"
        project = Path(__file__).resolve().parent.parent
        # The backup package alone, as the image holds it (backup/Dockerfile): it imports nothing else of ours.
        shutil.copytree(project / "backup", self.runtime / "backup", ignore=shutil.ignore_patterns("__pycache__"))
        for package in self.PACKAGES:
            imported = __import__(package)
            source = Path(imported.__file__ or "")
            if source.name == "__init__.py":
                shutil.copytree(
                    source.parent, self.runtime / source.parent.name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                copy(source, self.runtime / source.name, 0o644)
        rendered = render_backup_config(settings or env.settings, env.topo, stack)
        self.config = write(env.base / "backup" / "backup.json", rendered)
        for _name, directory in env.topo.backup_sources:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.user.own(self.runtime, self.config.parent, Path(env.topo.backup_work_dir))

    def __call__(
        self, *args: str, env_overrides: dict[str, str] | None = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": f"{PG_BIN}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(self.runtime),
            "HOME": str(self.env.base / "backup-work"),
            "TMPDIR": str(self.env.base / "backup-work"),
            **self.env.backup_env(),
            **(env_overrides or {}),
        }
        return subprocess.run(
            ["/usr/bin/python3", "-m", "backup.cli", "--config", str(self.config), *args],
            env=environment,
            cwd=self.runtime,
            preexec_fn=self.user.preexec(),
            capture_output=True,
            text=True,
            timeout=900,
            input=input_text,
            check=False,
        )
