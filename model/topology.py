"""Where each service listens and finds its files and peers.

The renderers take a `Topology` so that the only values that differ between a deployed container and a
test machine (ports, hosts, paths, certificate files) are decided here, in two explicit functions:
`container_topology` (what `pulumi up` deploys) and `loopback_topology` (what the integration tests run).
Everything else in a rendered file is the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from model.settings import Settings

# Roles and users the platform creates, besides the app's own.
ROLES = {
    "auth": "pgbouncer_auth",
    "monitor": "stories_monitor",
    "pgbouncer_admin": "pgbouncer_admin",
    "pgbouncer_stats": "pgbouncer_stats",
}

# Service ports inside the containers (nothing here is published except nginx's, see proxy.py).
POSTGRES_PORT = 5432
PGBOUNCER_PORT = 6432
REDIS_PORT = 6379
NGINX_HTTP_PORT = 8080
NGINX_HTTPS_PORT = 8443
NGINX_STATUS_PORT = 8081
CONFIG_ROOT = "/etc/stories"


BACKUP_STANZA = "stories"
BACKUP_GID = 999  # the backup service's group (the Postgres image's postgres group): reads the backed-up files
NGINX_UID = 101  # the nginx image's user
LETSENCRYPT_DIR = "/etc/letsencrypt"
BACKUP_ROOT = "/var/lib/stories-backup"


@dataclass(frozen=True)
class RepoLayout:
    """Where the backup repositories live: the stack's S3 bucket (under pgbackrest/ and restic/), or a
    local volume. The bucket's name is only known at deploy time and reaches the tools by environment."""

    kind: str  # "s3" or "posix"
    pgbackrest_path: str
    restic_location: str  # a local path, or the S3 prefix inside the bucket
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_uri_style: str = "host"
    ca_file: str | None = None


S3_CA_FILE = "s3-ca.crt"  # in the pgBackRest config directory, when the endpoint's CA is not a public one


def repo_layout(settings: Settings) -> RepoLayout:
    s3 = settings.backup.s3
    if s3.enabled:
        return RepoLayout(
            "s3",
            "/pgbackrest",
            "restic",
            s3.endpoint or f"s3.{s3.region}.amazonaws.com",
            s3.region,
            s3.uri_style,
            f"{CONFIG_ROOT}/pgbackrest/{S3_CA_FILE}" if s3.ca_certificate_pem else None,
        )
    return RepoLayout("posix", f"{BACKUP_ROOT}/pgbackrest", f"{BACKUP_ROOT}/restic")


@dataclass(frozen=True)
class Topology:
    postgres_host: str
    postgres_listen: str
    postgres_port: int
    postgres_socket_dir: str
    postgres_config_dir: str
    postgres_secrets_dir: str
    postgres_tls_dir: str
    postgres_client_networks: tuple[str, ...]
    pgbouncer_host: str
    pgbouncer_listen: str
    pgbouncer_port: int
    pgbouncer_config_dir: str
    pgbouncer_tls_dir: str
    redis_host: str
    redis_bind: str
    redis_port: int
    redis_config_dir: str
    redis_data_dir: str
    app_upstreams: tuple[str, ...]
    nginx_resolver: str | None
    nginx_http_port: int
    nginx_https_port: int
    nginx_status_listen: str
    nginx_config_dir: str
    nginx_mime_types: str
    nginx_pid_file: str
    nginx_error_log: str
    nginx_access_log: str
    nginx_temp_dir: str
    nginx_tls_dir: str
    nginx_fallback_tls_dir: str
    letsencrypt_live_dir: str
    nginx_acme_dir: str
    nginx_data_dir: str  # the app's served data directories, each at <nginx_data_dir>/<name>
    pg_data_dir: str
    pgbackrest_config_dir: str
    pgbackrest_lock_dir: str
    backup_repo: RepoLayout
    backup_work_dir: str
    backup_sources: tuple[tuple[str, str], ...]  # (name, directory) restic backs up as "files"
    backup_redis_dir: str


def app_hostname(replica: int) -> str:
    return f"app-{replica}"


BACKUP_SOURCES_ROOT = "/backup-sources"


def backup_sources(settings: Settings) -> tuple[tuple[str, str], ...]:
    """What the files job backs up, by name: every app data directory kept in backups, and the TLS
    certificates; each mounted read-only in the backup container under /backup-sources."""
    data = tuple((each.name, f"{BACKUP_SOURCES_ROOT}/{each.name}") for each in settings.app.data_dirs if each.backup)
    return (*data, ("certificates", f"{BACKUP_SOURCES_ROOT}/letsencrypt"))


def container_topology(settings: Settings) -> Topology:
    """The deployed layout: service names resolve through Docker's DNS on the stack's networks."""
    nginx_dir = f"{CONFIG_ROOT}/nginx"
    return Topology(
        postgres_host="postgres",
        postgres_listen="*",
        postgres_port=POSTGRES_PORT,
        postgres_socket_dir="/var/run/postgresql",
        postgres_config_dir=f"{CONFIG_ROOT}/postgres",
        postgres_secrets_dir=f"{CONFIG_ROOT}/postgres-secrets",
        postgres_tls_dir=f"{CONFIG_ROOT}/postgres-secrets",
        postgres_client_networks=(str(settings.networks.data),),
        pgbouncer_host="pgbouncer",
        pgbouncer_listen="0.0.0.0",
        pgbouncer_port=PGBOUNCER_PORT,
        pgbouncer_config_dir=f"{CONFIG_ROOT}/pgbouncer",
        pgbouncer_tls_dir=f"{CONFIG_ROOT}/pgbouncer",
        redis_host="redis",
        redis_bind="0.0.0.0",
        redis_port=REDIS_PORT,
        redis_config_dir=f"{CONFIG_ROOT}/redis",
        redis_data_dir="/data",
        # Every replica has the alias `app` on the app network, and Docker's DNS answers with the running
        # ones: nginx reaches whichever run (re-resolving where its version can), never a stopped one.
        app_upstreams=(f"app:{settings.app.port}",),
        nginx_resolver="127.0.0.11",  # Docker's embedded DNS
        nginx_http_port=NGINX_HTTP_PORT,
        nginx_https_port=NGINX_HTTPS_PORT,
        nginx_status_listen=str(NGINX_STATUS_PORT),
        nginx_config_dir=nginx_dir,
        nginx_mime_types="/etc/nginx/mime.types",
        nginx_pid_file="/tmp/nginx.pid",
        nginx_error_log="/dev/stderr",
        nginx_access_log="/dev/stdout",
        nginx_temp_dir="/tmp",
        nginx_tls_dir="/tmp/tls",
        nginx_fallback_tls_dir=f"{nginx_dir}/fallback-tls",
        letsencrypt_live_dir="/etc/letsencrypt/stories",  # written by certbot's deploy hook
        nginx_acme_dir="/var/www/acme",
        nginx_data_dir="/srv",
        pg_data_dir="/var/lib/postgresql/data/pgdata",
        pgbackrest_config_dir=f"{CONFIG_ROOT}/pgbackrest",
        pgbackrest_lock_dir="/tmp/pgbackrest",
        backup_repo=repo_layout(settings),
        backup_work_dir=BACKUP_ROOT,
        backup_sources=backup_sources(settings),
        backup_redis_dir=f"{BACKUP_SOURCES_ROOT}/redis",
    )


@dataclass(frozen=True)
class LoopbackPorts:
    postgres: int
    pgbouncer: int
    redis: int
    nginx_http: int
    nginx_https: int
    nginx_status: int
    app_upstreams: tuple[int, ...]


def loopback_topology(
    settings: Settings, base: Path, ports: LoopbackPorts, s3_endpoint: str | None = None, ca_file: str | None = None
) -> Topology:
    """The test-machine layout: every service on 127.0.0.1 with free ports, files under `base`.

    This is the single substitution between a deployed file and a tested one: hosts become 127.0.0.1,
    ports become the free ones given, and paths move under `base`; an S3 repository is the local
    S3-compatible server at `s3_endpoint` (path-style addressing, trusting `ca_file`). No other value changes.
    """
    deployed = container_topology(settings)
    repo = deployed.backup_repo
    if repo.kind == "s3":
        repo = replace(repo, s3_endpoint=s3_endpoint, s3_uri_style="path", ca_file=ca_file)
    else:
        repo = replace(
            repo, pgbackrest_path=str(base / "repo" / "pgbackrest"), restic_location=str(base / "repo" / "restic")
        )
    return replace(
        deployed,
        postgres_host="127.0.0.1",
        postgres_listen="127.0.0.1",
        postgres_port=ports.postgres,
        postgres_socket_dir=str(base / "postgres-run"),
        postgres_config_dir=str(base / "postgres"),
        postgres_secrets_dir=str(base / "postgres-secrets"),
        postgres_tls_dir=str(base / "postgres-secrets"),
        postgres_client_networks=("127.0.0.1/32",),
        pgbouncer_host="127.0.0.1",
        pgbouncer_listen="127.0.0.1",
        pgbouncer_port=ports.pgbouncer,
        pgbouncer_config_dir=str(base / "pgbouncer"),
        pgbouncer_tls_dir=str(base / "pgbouncer"),
        redis_host="127.0.0.1",
        redis_bind="127.0.0.1",
        redis_port=ports.redis,
        redis_config_dir=str(base / "redis"),
        redis_data_dir=str(base / "redis-data"),
        app_upstreams=tuple(f"127.0.0.1:{port}" for port in ports.app_upstreams),
        nginx_resolver=None,
        nginx_http_port=ports.nginx_http,
        nginx_https_port=ports.nginx_https,
        nginx_status_listen=f"127.0.0.1:{ports.nginx_status}",
        nginx_config_dir=str(base / "nginx"),
        nginx_pid_file=str(base / "nginx-run" / "nginx.pid"),
        nginx_error_log=str(base / "nginx-run" / "error.log"),
        nginx_access_log=str(base / "nginx-run" / "access.log"),
        nginx_temp_dir=str(base / "nginx-run"),
        nginx_tls_dir=str(base / "nginx-tls"),
        nginx_fallback_tls_dir=str(base / "nginx" / "fallback-tls"),
        letsencrypt_live_dir=str(base / "letsencrypt" / "stories"),
        nginx_acme_dir=str(base / "acme"),
        nginx_data_dir=str(base / "srv"),
        pg_data_dir=str(base / "postgres-data"),
        pgbackrest_config_dir=str(base / "pgbackrest"),
        pgbackrest_lock_dir=str(base / "pgbackrest-lock"),
        backup_repo=repo,
        backup_work_dir=str(base / "backup-work"),
        backup_sources=tuple((name, str(base / "sources" / name)) for name, _ in deployed.backup_sources),
        backup_redis_dir=str(base / "redis-data"),
    )


# The Kubernetes target's Service names: CloudNativePG names its Services after the Cluster and the Pooler.
POSTGRES_CLUSTER = "postgres"
POOLER = f"{POSTGRES_CLUSTER}-pooler-rw"


def kubernetes_topology(settings: Settings) -> Topology:
    """The Kubernetes layout: the same files and paths as a container's, the peers by their Service names
    in the stack's namespace (the Pooler listens on 5432, CloudNativePG's fixed port)."""
    return replace(
        container_topology(settings),
        postgres_host=f"{POSTGRES_CLUSTER}-rw",
        pgbouncer_host=POOLER,
        pgbouncer_port=POSTGRES_PORT,
        app_upstreams=(f"app:{settings.app.port}",),
        nginx_resolver=None,
    )
