"""Render every service's configuration files from the settings.

Pure functions: settings + topology + server versions in, file contents out. The components upload
these, `make plan OUT=dir` writes them, and the integration tests run the real servers on them.
Files that must hold secrets (PgBouncer's userlist, Redis's ACL file, Alertmanager's receivers) have
their own functions that take the secret values as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.bccache import Bucket

from configs import dashboards, monitoring
from model.settings import SUPERUSER_RESERVED_CONNECTIONS, Settings
from model.topology import BACKUP_GID, BACKUP_STANZA, LETSENCRYPT_DIR, NGINX_UID, ROLES, Topology
from model.tuning import postgres_tuning

TEMPLATES = Path(__file__).parent / "templates"


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept beside them, as Python keeps compiled modules: otherwise every process
    compiles each template it renders again (about 30 ms for a stack's, most of its rendering).
    jinja2 checks an entry against the template's source and its own and Python's versions. A cache
    that cannot be read or written (a read-only checkout) is left out: the template is compiled."""

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError:
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            Path(self.directory).mkdir(exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # configuration files, not HTML
    bytecode_cache=TemplateCache(TEMPLATES / "__pycache__"),
)

Files = dict[str, str]


@dataclass(frozen=True)
class ServerVersions:
    """The server versions the files are rendered for; keys that differ by version follow these."""

    postgres: tuple[int, ...]
    pgbouncer: tuple[int, ...]
    redis: tuple[int, ...]
    nginx: tuple[int, ...]


def image_versions(settings: Settings) -> ServerVersions:
    """The versions of the pinned images: what `pulumi up` deploys."""
    images = settings.images
    return ServerVersions(
        postgres=images.ref("postgres").version,
        pgbouncer=images.ref("pgbouncer").version,
        redis=images.ref("redis").version,
        nginx=images.ref("nginx").version,
    )


def _render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def render_postgres(settings: Settings, topo: Topology, versions: ServerVersions) -> Files:
    context = {
        "stack": settings.domain,
        "version": _dotted(versions.postgres),
        "topo": topo,
        "db": settings.database,
        "roles": ROLES,
        "tuning": postgres_tuning(settings),
        "memory_mb": settings.database.resources.memory_mb,
        "pool_connections": settings.pgbouncer.server_connections,
        "superuser_reserved": SUPERUSER_RESERVED_CONNECTIONS,
        "backup": settings.backup.postgres,
        "stanza": BACKUP_STANZA,
    }
    return {
        "postgresql.conf": _render("postgres/postgresql.conf.j2", **context),
        "pg_hba.conf": _render("postgres/pg_hba.conf.j2", **context),
        "init.sql": _render("postgres/init.sql.j2", **context),
    }


def render_pgbackrest(settings: Settings, topo: Topology) -> Files:
    return {
        "pgbackrest.conf": _render(
            "pgbackrest/pgbackrest.conf.j2",
            domain=settings.domain,
            repo=topo.backup_repo,
            pg=settings.backup.postgres,
            topo=topo,
            stanza=BACKUP_STANZA,
        )
    }


def render_pgbouncer(settings: Settings, topo: Topology, versions: ServerVersions) -> Files:
    return {
        "pgbouncer.ini": _render(
            "pgbouncer/pgbouncer.ini.j2",
            stack=settings.domain,
            version=versions.pgbouncer,
            version_text=_dotted(versions.pgbouncer),
            topo=topo,
            db=settings.database,
            pool=settings.pgbouncer,
            roles=ROLES,
        )
    }


def render_pgbouncer_userlist(verifiers: Mapping[str, str]) -> str:
    """PgBouncer's auth_file: the console users with SCRAM verifiers (never plaintext)."""
    for user, verifier in verifiers.items():
        if not verifier.startswith("SCRAM-SHA-256$"):
            raise ValueError(f"userlist entry for {user!r} must be a SCRAM-SHA-256 verifier, not a password")
    return "".join(f'"{user}" "{verifier}"\n' for user, verifier in sorted(verifiers.items()))


def render_redis(settings: Settings, topo: Topology, versions: ServerVersions) -> Files:
    return {
        "redis.conf": _render(
            "redis/redis.conf.j2",
            stack=settings.domain,
            version_text=_dotted(versions.redis),
            topo=topo,
            redis=settings.redis,
        )
    }


def render_redis_acl(password_hashes: Mapping[str, str]) -> str:
    """Redis's ACL file; `password_hashes` maps app, exporter, healthcheck and backup to SHA-256 digests."""
    return _render("redis/users.acl.j2", hashes=password_hashes)


@dataclass(frozen=True)
class ServedDir:
    """An app data directory nginx serves from its volume (mounted at <topo.nginx_data_dir>/<name>)."""

    name: str
    url_path: str
    max_age_seconds: int


def served_data_dirs(settings: Settings) -> list[ServedDir]:
    proxy = settings.proxy
    days = {"static": proxy.static_cache_days, "pdf": proxy.pdf_cache_days}
    return [
        ServedDir(each.name, each.url_path, days[each.cache] * 86400)
        for each in settings.app.data_dirs
        if each.url_path is not None
    ]


def render_files_server(settings: Settings, port: int, data_root: str, scratch_dir: str, health_path: str) -> str:
    """The Kubernetes target's static server of the served data directories (the directory `<name>` of
    each under `data_root`): what the Docker target's nginx does with `alias`."""
    context = {"port": port, "data_root": data_root, "scratch_dir": scratch_dir, "health_path": health_path}
    return _render("files/nginx.conf.j2", served_dirs=served_data_dirs(settings), **context)


# How long nginx keeps an answer of Docker's DNS: a replica that went is out of its view within this.
RESOLVER_VALID_SECONDS = 5


def render_nginx(settings: Settings, topo: Topology, versions: ServerVersions) -> Files:
    # nginx 1.25.1 moved HTTP/2 to its own directive; 1.27.3 brought `resolve` on upstream servers
    # to the open-source build, which lets replicas come and go without a reload. Before it, with a
    # resolver (Docker's DNS), the app's name is resolved per request instead (nginx.conf.j2).
    upstream_resolve = versions.nginx >= (1, 27, 3)
    context = {
        "stack": settings.domain,
        "domain": settings.domain,
        "version_text": _dotted(versions.nginx),
        "topo": topo,
        "proxy": settings.proxy,
        "http2_directive": versions.nginx >= (1, 25, 1),
        "resolver": topo.nginx_resolver,
        "resolver_valid_seconds": RESOLVER_VALID_SECONDS,
        "resolve_per_request": bool(topo.nginx_resolver) and not upstream_resolve,
        "next_upstream_tries": 2 * settings.app.max_replicas,
        "check_seconds": settings.proxy.tls.reload_check_seconds,
        "served_dirs": served_data_dirs(settings),
    }
    return {
        "nginx.conf": _render("nginx/nginx.conf.j2", **context),
        "start.sh": _render("nginx/start.sh.j2", **context),
    }


ACME_CA_FILE = "acme-ca.crt"


def certbot_server_args(settings: Settings) -> str:
    tls = settings.proxy.tls
    if tls.acme_directory_url:
        return f" --server {tls.acme_directory_url}"
    return " --staging" if tls.acme_staging else ""


def render_certbot(settings: Settings, topo: Topology) -> Files:
    """certbot's loop, and the deploy hook that hands the key to nginx's uid (hence CAP_CHOWN) in the
    directory nginx's start script watches, readable by the backup group too."""
    tls = settings.proxy.tls
    live = topo.letsencrypt_live_dir
    share = (
        f'find {LETSENCRYPT_DIR} -mindepth 1 -path "{live}" -prune '
        f"-o -exec chgrp {BACKUP_GID} {{}} + -exec chmod g+rX,o-rwx {{}} +"
    )
    # The mode before the owner: once the key is nginx's, root without CAP_FOWNER cannot chmod it.
    hook = (
        f"install -D -m 0440 $RENEWED_LINEAGE/privkey.pem {live}/privkey.pem && "
        f"chown {NGINX_UID}:{BACKUP_GID} {live}/privkey.pem && "
        f"install -D -m 0444 $RENEWED_LINEAGE/fullchain.pem {live}/fullchain.pem && {share}"
    )
    script = _render(
        "certbot/certbot.sh.j2",
        domain=settings.domain,
        email=tls.email,
        topo=topo,
        server_args=certbot_server_args(settings),
        deploy_hook=hook,
        share_command=share,
        renew_seconds=tls.renew_interval_hours * 3600,
        retry_seconds=tls.retry_seconds,
    )
    return {"certbot.sh": script}


class _Redacted(dict[str, str]):
    """Stands in for the secrets mapping where a file is shown rather than deployed."""

    def __missing__(self, key: str) -> str:
        return "[secret]"


def render_all(settings: Settings, topo: Topology, versions: ServerVersions) -> dict[str, Files]:
    """Every configuration file of the stack, as `{service: {relative path: content}}`. Secret-bearing
    files appear with their secrets shown as "[secret]"; the components render those with the values."""
    files: dict[str, Files] = {
        "postgres": render_postgres(settings, topo, versions),
        "pgbackrest": render_pgbackrest(settings, topo),
        "pgbouncer": render_pgbouncer(settings, topo, versions),
        "redis": render_redis(settings, topo, versions),
        "nginx": render_nginx(settings, topo, versions),
    }
    if settings.proxy.tls.mode == "letsencrypt":
        files["certbot"] = render_certbot(settings, topo)
    if settings.monitoring.enabled:
        files.update(render_monitoring(settings))
        files["alertmanager"] = {"alertmanager.yml": monitoring.render_alertmanager(settings, _Redacted())}
    return files


def render_monitoring(settings: Settings) -> dict[str, Files]:
    """The files of the monitoring services that hold no secret, as `render_all` has them: Prometheus's
    (with its rules), the blackbox prober's and, when enabled, Grafana's."""
    rules = {f"rules/{name}": content for name, content in monitoring.render_rules(settings).items()}
    files = {
        "prometheus": {"prometheus.yml": monitoring.render_prometheus(settings), **rules},
        "blackbox-exporter": {"blackbox.yml": monitoring.render_blackbox()},
    }
    if settings.monitoring.grafana.enabled:
        provisioning = monitoring.render_grafana_provisioning()
        files["grafana"] = {
            "provisioning/datasources/prometheus.yml": provisioning["datasources.yml"],
            "provisioning/dashboards/stories.yml": provisioning["dashboards.yml"],
            **{f"dashboards/{name}": content for name, content in dashboards.render_dashboards(settings).items()},
        }
    return files
