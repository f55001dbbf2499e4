"""The stack configuration as one validated model tree.

Every number the platform uses is decided here (or derived here from what is decided here) and read
everywhere else. The defaults are the ops guide's numbers. Keys are camelCase in `Pulumi.<stack>.yaml`;
units are part of the key name (`memoryMb`, `retentionDays`, ...).
"""

from __future__ import annotations

import itertools
import re
from datetime import date, time
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from model.images import ImageRef, parse_image
from model.schedule import CronSchedule, ScheduleError

# Postgres connections that are not PgBouncer's: superuser_reserved_connections, the exporter, the
# backup tool (pgBackRest opens up to two), and a few for an operator's psql or a migration.
SUPERUSER_RESERVED_CONNECTIONS = 3
NON_POOL_CONNECTIONS = 12

# The prefixes the backup tools own inside the bucket (issue 4). A lifecycle rule that expires current
# versions must never reach into them: restic keeps unchanged files in packs that can be years old and
# pgBackRest keeps a full backup for as long as its diffs need it.
BACKUP_TOOL_PREFIXES = ("pgbackrest/", "restic/")


Location = tuple[str | int, ...]


class InvalidKeyError(ValueError):
    """A model validator's finding about one key under its model: `location` is the key path from the
    model (camelCase keys, list indexes) and `value` the value there. pydantic keeps the exception in
    the error's context; loading.py appends the location to the model's and names that key."""

    def __init__(self, location: Location, value: Any, rule: str) -> None:
        super().__init__(rule)
        self.location = location
        self.value = value


def blamed(earlier: str, later: str, written: set[str]) -> tuple[str, str]:
    """Of two keys that clash, (the one to name, the other): the one the user wrote, else the later."""
    if earlier in written and later not in written:
        return earlier, later
    return later, earlier


class Model(BaseModel):
    """Base of every settings node: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
    )


def _pinned_image(value: str) -> str:
    parse_image(value)  # raises ValueError with the rule when unpinned or the tag is floating
    return value


def _versioned_image(value: str) -> str:
    reference = parse_image(value)
    if not reference.version:
        raise ValueError(
            f"keep the version tag beside the digest ({reference.repository}:<version>@sha256:...): "
            "this image's configuration is rendered for its version"
        )
    return value


def _built_image(value: str) -> str:
    if parse_image(value).digest:
        raise ValueError("must be repository:tag: the digest of an image built here is known only after the build")
    return value


def _postgres_15(value: str) -> str:
    if parse_image(value).major != 15:
        raise ValueError("must be a PostgreSQL 15 image (the data directory is 15)")
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
VersionedImage = Annotated[PinnedImage, AfterValidator(_versioned_image)]
BuiltImage = Annotated[PinnedImage, AfterValidator(_built_image)]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^localhost$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError("must be a lowercase DNS name such as stories.example.org")
    return value


def _sql_identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError("must be a lowercase SQL identifier: letters, digits, underscore, at most 63")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError("must be an environment variable name: A-Z, 0-9 and _, not starting with a digit")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path, starting with /")
    return value


def _docker_host(value: str) -> str:
    if not re.match(r"^(unix|ssh|tcp)://\S+$", value):
        raise ValueError("must be unix:///path, ssh://user@host or tcp://host:port")
    return value


# The databases every Postgres cluster has; the app's own must be another.
SYSTEM_DATABASES = ("postgres", "template0", "template1")


def _app_database(value: str) -> str:
    if value in SYSTEM_DATABASES:
        raise ValueError(f"must not be one of Postgres's own databases ({', '.join(SYSTEM_DATABASES)})")
    return value


# RFC 1918: a public range on a Docker network shadows those real addresses on the host.
PRIVATE_RANGES = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))


def _private_subnet(value: IPv4Network) -> IPv4Network:
    if not any(value.subnet_of(private) for private in PRIVATE_RANGES):
        raise ValueError(f"must be a private range (RFC 1918: {', '.join(map(str, PRIVATE_RANGES))})")
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone (e.g. Europe/Berlin)") from None
    return value


def _cron_schedule(value: str) -> str:
    try:
        CronSchedule.parse(value)
    except ScheduleError as error:
        raise ValueError(f"is not a cron schedule: {error}") from None
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
SqlIdentifier = Annotated[str, AfterValidator(_sql_identifier)]
EnvName = Annotated[str, AfterValidator(_env_name)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
DockerHost = Annotated[str, AfterValidator(_docker_host)]
AppDatabase = Annotated[SqlIdentifier, AfterValidator(_app_database)]
PrivateSubnet = Annotated[IPv4Network, AfterValidator(_private_subnet)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Schedule = Annotated[str, AfterValidator(_cron_schedule)]


class Resources(Model):
    """Container limits: `memoryMb` is the hard limit, `memoryReservationMb` the soft one Docker
    falls back to under host memory pressure, `cpus` a CFS quota in cores."""

    memory_mb: int = Field(ge=16, le=262144)
    memory_reservation_mb: int = Field(ge=8, le=262144)
    cpus: float = Field(gt=0, le=64)

    @model_validator(mode="after")
    def _reservation_below_limit(self) -> Resources:
        if self.memory_reservation_mb > self.memory_mb:
            raise InvalidKeyError(
                ("memoryReservationMb",), self.memory_reservation_mb, f"must not exceed memoryMb ({self.memory_mb})"
            )
        return self


def resources(memory_mb: int, reservation_mb: int, cpus: float) -> Resources:
    return Resources.model_validate({"memoryMb": memory_mb, "memoryReservationMb": reservation_mb, "cpus": cpus})


class HostSettings(Model):
    docker_host: DockerHost = "unix:///var/run/docker.sock"
    ssh_opts: list[str] = Field(default_factory=list)
    memory_mb: int = Field(default=8192, ge=512)
    cpus: float = Field(default=4, gt=0)
    retain_data_volumes: bool = True
    docker_socket_gid: int = Field(default=999, ge=1, description="gid owning /var/run/docker.sock on the host")


EGRESS_PREFIX_LENGTH = 27  # each egress network gets a /27 of `networks.egress`: 30 addresses, one service


class NetworkSettings(Model):
    """Subnets of the stack's Docker networks, fixed so that pg_hba can name the data network.

    `egress` is split into one small network per service that must reach outside (S3, outside APIs):
    each such service gets a network of its own, so reaching the internet never means sharing a network
    with another service. `egressInternal` is for an isolated test host only (the e2e stack): those
    networks then have no route out and the outside services are stand-ins attached to them."""

    edge: PrivateSubnet = IPv4Network("172.30.0.0/24")
    app: PrivateSubnet = IPv4Network("172.30.1.0/24")
    backend: PrivateSubnet = IPv4Network("172.30.2.0/24")
    data: PrivateSubnet = IPv4Network("172.30.3.0/24")
    monitoring: PrivateSubnet = IPv4Network("172.30.4.0/24")
    control: PrivateSubnet = IPv4Network("172.30.5.0/24")
    egress: PrivateSubnet = Field(default=IPv4Network("172.30.8.0/24"), description="split into /27s")
    egress_internal: bool = False

    def subnets(self) -> dict[str, IPv4Network]:
        return {name: value for name, value in self if isinstance(value, IPv4Network)}

    @model_validator(mode="after")
    def _disjoint(self) -> NetworkSettings:
        if self.egress.prefixlen > EGRESS_PREFIX_LENGTH - 2:
            raise InvalidKeyError(
                ("egress",), self.egress, f"must be a /{EGRESS_PREFIX_LENGTH - 2} or larger (a /27 per service)"
            )
        subnets = self.subnets()  # one-word fields: each name is its camelCase key
        for earlier, later in itertools.combinations(subnets, 2):
            if subnets[earlier].overlaps(subnets[later]):
                name, other = blamed(earlier, later, self.model_fields_set)
                raise InvalidKeyError((name,), subnets[name], f"overlaps {other} ({subnets[other]})")
        return self


class Images(Model):
    """Every image pinned, by an explicit version tag or a digest (`repository@sha256:...`) or both.
    postgres, pgbouncer, redis and nginx keep their version tag beside a digest: their configuration is
    rendered for their version. The Postgres major must stay 15 (the data directory)."""

    postgres: Annotated[VersionedImage, AfterValidator(_postgres_15)] = "postgres:15.13-bookworm"
    pgbouncer: VersionedImage = "edoburu/pgbouncer:1.23.1"
    redis: VersionedImage = "redis:7.2.5-alpine"
    nginx: VersionedImage = "nginxinc/nginx-unprivileged:1.27.3-alpine"
    certbot: PinnedImage = "certbot/certbot:v3.0.1"
    prometheus: PinnedImage = "prom/prometheus:v2.53.3"
    alertmanager: PinnedImage = "prom/alertmanager:v0.27.0"
    node_exporter: PinnedImage = "prom/node-exporter:v1.8.2"
    # v0.57 negotiates the Docker API version (Engine 29.0-29.2 refuse the 1.41 that v0.49 asked for).
    cadvisor: PinnedImage = "ghcr.io/google/cadvisor:v0.57.0"
    postgres_exporter: PinnedImage = "quay.io/prometheuscommunity/postgres-exporter:v0.16.0"
    pgbouncer_exporter: PinnedImage = "prometheuscommunity/pgbouncer-exporter:v0.10.2"
    redis_exporter: PinnedImage = "oliver006/redis_exporter:v1.66.0"
    nginx_exporter: PinnedImage = "nginx/nginx-prometheus-exporter:1.4.0"
    blackbox_exporter: PinnedImage = "prom/blackbox-exporter:v0.25.0"
    grafana: PinnedImage = "grafana/grafana:11.3.1"
    socket_proxy: PinnedImage = "wollomatic/socket-proxy:1.12.2"

    def ref(self, service: str) -> ImageRef:
        return parse_image(getattr(self, service))


class AppBuild(Model):
    """Build the app image from its repository (docker.Image with BuildKit)."""

    context: str
    dockerfile: str = "Dockerfile"
    target: str | None = None
    image_name: BuiltImage
    cache_from: list[str] = Field(default_factory=list)


# URL prefixes that stay the app's: nginx must not serve a data directory there.
APP_URL_PREFIXES = ("/api/", "/_next/")
# Backup sources that are not data directories (topology.backup_sources).
RESERVED_DATA_DIR_NAMES = ("certificates",)


class DataDir(Model):
    """A directory the app writes at run time: the named volume `<stack>-app-<name>`, mounted at `path` in
    every replica (a file one replica writes, the others read), kept by host.retainDataVolumes, backed up
    by the files job unless `backup` is false, and served by nginx at `urlPath` when one is set (a Next.js
    production server does not serve files added to public/ after its build), read-only, with the cache
    rules of `cache`: static assets (proxy.staticCacheDays) or PDFs (proxy.pdfCacheDays)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    path: AbsolutePath
    url_path: str | None = Field(default=None, pattern=r"^/[a-z0-9][a-z0-9/_-]*/$")
    cache: Literal["static", "pdf"] = "static"
    backup: bool = True


def _default_data_dirs() -> list[DataDir]:
    """Where the 1001 Stories app writes (its source: process.cwd()-relative paths under /app)."""
    return [
        DataDir.model_validate(each)
        for each in (
            {"name": "uploads", "path": "/app/uploads"},
            {"name": "books", "path": "/app/public/books", "urlPath": "/books/", "cache": "pdf"},
            {"name": "covers", "path": "/app/public/covers", "urlPath": "/covers/"},
            {"name": "avatars", "path": "/app/public/avatars", "urlPath": "/avatars/"},
            {"name": "generated-images", "path": "/app/public/generated-images", "urlPath": "/generated-images/"},
            # Personal-data exports: never served, and regenerated on request rather than kept in backups.
            {"name": "exports", "path": "/app/private/exports", "backup": False},
        )
    ]


def _inside(path: str, other: str) -> bool:
    return path == other or path.startswith(other.rstrip("/") + "/")


NonEmpty = Annotated[str, Field(min_length=1)]


class MigrationSettings(Model):
    """Schema migrations, once per deploy, before any replica starts or rolls: a one-shot container of
    `image` (a pinned image with the migration tool and the app's migrations; with app.build, by default
    app.build's Dockerfile built at `buildTarget`) that runs `command` against Postgres directly (not
    PgBouncer: Prisma Migrate holds a session-level advisory lock) as the app's role, and is stopped after
    `timeoutSeconds`."""

    enabled: bool = True
    image: PinnedImage | None = None
    build_target: str = Field(default="build-deps", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    command: list[NonEmpty] = Field(default_factory=lambda: ["npx", "prisma", "migrate", "deploy"], min_length=1)
    timeout_seconds: int = Field(default=600, ge=30, le=7200)
    resources: Resources = Field(default_factory=lambda: resources(512, 128, 0.5))


REPLACED_APP_KEYS = {
    "uploadsPath": "replaced by app.dataDirs (the entry named uploads)",
    "booksPath": "replaced by app.dataDirs (the entry named books)",
}


class AppSettings(Model):
    image: PinnedImage | None = None
    build: AppBuild | None = None
    replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=3, ge=1, le=10)
    port: int = Field(default=3000, ge=1, le=65535)
    env: dict[EnvName, str] = Field(default_factory=dict)
    secret_env: list[EnvName] = Field(default_factory=list)
    data_dirs: list[DataDir] = Field(default_factory=_default_data_dirs)
    tmp_path: AbsolutePath = "/app/tmp"
    cache_path: AbsolutePath = "/app/.next/cache"
    health_path: AbsolutePath = "/api/health"
    metrics_path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_.-]*$")
    migration: MigrationSettings = Field(default_factory=MigrationSettings)
    resources: Resources = Field(default_factory=lambda: resources(1024, 256, 1.0))

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, rule in REPLACED_APP_KEYS.items():
                if key in data:
                    raise InvalidKeyError((key,), data[key], rule)
        return data

    @model_validator(mode="after")
    def _image_or_build(self) -> AppSettings:
        if (self.image is None) == (self.build is None):
            raise InvalidKeyError(
                ("image",), self.image, "set exactly one of image (a pinned reference) or build (a context to build)"
            )
        if self.replicas > self.max_replicas:
            raise InvalidKeyError(("replicas",), self.replicas, f"must not exceed maxReplicas ({self.max_replicas})")
        if self.migration.enabled and self.migration.image is None and self.build is None:
            raise InvalidKeyError(
                ("migration", "image"),
                None,
                "is required with app.image: a pinned image with the migration tool and the app's migrations "
                "(the prisma CLI is a devDependency, absent from the app's production image; e.g. its Dockerfile's "
                "build-deps stage, pushed beside the app image), or set app.migration.enabled to false",
            )
        return self

    @model_validator(mode="after")
    def _data_dirs_apart(self) -> AppSettings:
        seen: dict[tuple[str, str], int] = {}  # (key, value) -> the index of the entry that has it
        scratch = {"tmpPath": self.tmp_path, "cachePath": self.cache_path}
        for index, each in enumerate(self.data_dirs):
            if each.name in RESERVED_DATA_DIR_NAMES:
                rule = "is reserved: the files job backs up the platform's own sources under that name"
                raise InvalidKeyError(("dataDirs", index, "name"), each.name, rule)
            for key, value in (("name", each.name), ("urlPath", each.url_path)):
                if value is None:
                    continue
                if (key, value) in seen:
                    rule = f"repeats dataDirs[{seen[key, value]}].{key}; each must be unique"
                    raise InvalidKeyError(("dataDirs", index, key), value, rule)
                seen[key, value] = index
            for earlier_index, earlier in enumerate(self.data_dirs[:index]):
                if _inside(each.path, earlier.path) or _inside(earlier.path, each.path):
                    rule = f"overlaps dataDirs[{earlier_index}].path ({earlier.path}); one volume per directory"
                    raise InvalidKeyError(("dataDirs", index, "path"), each.path, rule)
            for key, value in scratch.items():
                if _inside(each.path, value) or _inside(value, each.path):
                    rule = f"overlaps {key} ({value}), a tmpfs that is not kept"
                    raise InvalidKeyError(("dataDirs", index, "path"), each.path, rule)
            if each.url_path and (each.url_path.startswith(APP_URL_PREFIXES) or each.url_path == "/health/"):
                rule = f"would hide the app's own routes ({', '.join(APP_URL_PREFIXES)}, /health)"
                raise InvalidKeyError(("dataDirs", index, "urlPath"), each.url_path, rule)
        return self

    def data_dir(self, name: str) -> DataDir | None:
        return next((each for each in self.data_dirs if each.name == name), None)


class DatabaseSettings(Model):
    name: AppDatabase = "stories_db"
    user: SqlIdentifier = "stories_user"
    data_host_path: str | None = None
    work_mem_mb: int = Field(default=4, ge=1, le=2048)
    max_connections: int | None = Field(default=None, ge=10, le=5000)
    statement_timeout_seconds: int = Field(default=30, ge=1)
    idle_in_transaction_timeout_seconds: int = Field(default=60, ge=1)
    slow_query_ms: int = Field(default=1000, ge=0)
    resources: Resources = Field(default_factory=lambda: resources(512, 256, 0.75))


class PoolSettings(Model):
    pool_mode: Literal["transaction", "session"] = "transaction"
    default_pool_size: int = Field(default=20, ge=1, le=1000)
    min_pool_size: int = Field(default=5, ge=0)
    reserve_pool_size: int = Field(default=5, ge=0)
    reserve_pool_timeout_seconds: int = Field(default=3, ge=0)
    max_client_conn: int = Field(default=100, ge=1, le=100000)
    server_idle_timeout_seconds: int = Field(default=600, ge=0)
    resources: Resources = Field(default_factory=lambda: resources(128, 32, 0.25))

    @model_validator(mode="after")
    def _pool_order(self) -> PoolSettings:
        if self.min_pool_size > self.default_pool_size:
            raise InvalidKeyError(
                ("minPoolSize",), self.min_pool_size, f"must not exceed defaultPoolSize ({self.default_pool_size})"
            )
        if self.max_client_conn < self.default_pool_size:
            raise InvalidKeyError(
                ("maxClientConn",), self.max_client_conn, f"must be at least defaultPoolSize ({self.default_pool_size})"
            )
        return self

    @property
    def server_connections(self) -> int:
        """The most server connections PgBouncer opens to Postgres (one database/user pair)."""
        return self.default_pool_size + self.reserve_pool_size


class RedisSettings(Model):
    maxmemory_mb: int = Field(default=256, ge=16)
    maxmemory_policy: Literal[
        "allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "allkeys-random", "volatile-ttl", "noeviction"
    ] = "allkeys-lru"
    persistence: Literal["none", "rdb", "aof", "rdb+aof"] = "rdb"
    resources: Resources = Field(default_factory=lambda: resources(512, 128, 0.25))

    @property
    def forks_for_persistence(self) -> bool:
        return self.persistence != "none"

    @property
    def required_limit_mb(self) -> int:
        """A BGSAVE/AOF rewrite forks; copy-on-write can touch every page, so the worst case is twice
        the dataset. Without persistence only the allocator's overhead needs room."""
        return 2 * self.maxmemory_mb if self.forks_for_persistence else self.maxmemory_mb + 64


class TlsSettings(Model):
    """`acmeDirectoryUrl` and `acmeCaCertificatePem` point certbot at another ACME server than Let's
    Encrypt's (a private CA, or the e2e stack's test server); `retrySeconds` is how soon certbot tries
    again after a failed attempt; nginx checks for a new certificate every `reloadCheckSeconds`."""

    mode: Literal["self-signed", "letsencrypt"] = "self-signed"
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    acme_staging: bool = False
    acme_directory_url: str | None = Field(default=None, pattern=r"^https://[^\s'\"]+$")
    acme_ca_certificate_pem: str | None = Field(default=None, pattern=r"^-----BEGIN CERTIFICATE-----\n")
    renew_interval_hours: int = Field(default=12, ge=1, le=168)
    retry_seconds: int = Field(default=300, ge=5, le=86400)
    reload_check_seconds: int = Field(default=60, ge=5, le=3600)

    @model_validator(mode="after")
    def _email_for_acme(self) -> TlsSettings:
        if self.mode == "letsencrypt" and not self.email:
            raise InvalidKeyError(("email",), self.email, "mode letsencrypt needs an email for the ACME account")
        return self


class RateLimits(Model):
    api_per_second: int = Field(default=10, ge=1)
    api_burst: int = Field(default=20, ge=0)
    auth_per_minute: int = Field(default=30, ge=1)
    auth_burst: int = Field(default=10, ge=0)


class ProxySettings(Model):
    """`hostIp`, `httpHostPort` and `httpsHostPort`: where nginx is published on the host (the world's
    80 and 443; the e2e stack publishes on 127.0.0.1 and high ports)."""

    host_ip: IPv4Address = IPv4Address("0.0.0.0")
    http_host_port: int = Field(default=80, ge=1, le=65535)
    https_host_port: int = Field(default=443, ge=1, le=65535)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    client_max_body_mb: int = Field(default=50, ge=1, le=4096)
    static_cache_days: int = Field(default=365, ge=0)
    pdf_cache_days: int = Field(default=30, ge=0)
    hsts_max_age_seconds: int = Field(default=31536000, ge=0)
    resources: Resources = Field(default_factory=lambda: resources(256, 64, 0.5))
    certbot_resources: Resources = Field(default_factory=lambda: resources(128, 32, 0.1))

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "booksUrlPath" in data:
            rule = "replaced by app.dataDirs: the urlPath of the entry named books"
            raise InvalidKeyError(("booksUrlPath",), data["booksUrlPath"], rule)
        return data


class AlertThresholds(Model):
    """The guide's alert thresholds."""

    service_down_minutes: int = Field(default=1, ge=1)
    db_connection_failure_percent: float = Field(default=5, gt=0, lt=100)
    memory_percent: float = Field(default=90, gt=0, lt=100)
    disk_free_percent: float = Field(default=10, gt=0, lt=100)
    cpu_percent: float = Field(default=80, gt=0, lt=100)
    cpu_for_minutes: int = Field(default=5, ge=1)
    response_time_seconds: float = Field(default=2, gt=0)
    active_sessions: int = Field(default=100, ge=1)


class EmailReceiver(Model):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    smarthost: str = Field(pattern=r"^[^:\s]+:\d+$")
    auth_username: str | None = None
    auth_password_secret: str | None = None


class SlackReceiver(Model):
    api_url_secret: str
    channel: str = Field(pattern=r"^#[a-z0-9_-]+$")


class WebhookReceiver(Model):
    url_secret: str


class Receiver(Model):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    severities: tuple[Literal["critical", "warning"], ...] = ("critical", "warning")
    email: EmailReceiver | None = None
    slack: SlackReceiver | None = None
    webhook: WebhookReceiver | None = None

    @model_validator(mode="after")
    def _one_channel(self) -> Receiver:
        if sum(channel is not None for channel in (self.email, self.slack, self.webhook)) != 1:
            raise ValueError(f"receiver {self.name!r} must set exactly one of email, slack or webhook")
        return self

    def secret_keys(self) -> dict[str, str]:
        """Key path (from the receiver) -> the secret it names."""
        keys = {
            "email.authPasswordSecret": self.email.auth_password_secret if self.email else None,
            "slack.apiUrlSecret": self.slack.api_url_secret if self.slack else None,
            "webhook.urlSecret": self.webhook.url_secret if self.webhook else None,
        }
        return {key: name for key, name in keys.items() if name}


class GrafanaSettings(Model):
    enabled: bool = False
    host_port: int = Field(default=3001, ge=1024, le=65535)
    resources: Resources = Field(default_factory=lambda: resources(256, 64, 0.25))


class MonitoringResources(Model):
    prometheus: Resources = Field(default_factory=lambda: resources(1024, 256, 0.5))
    alertmanager: Resources = Field(default_factory=lambda: resources(128, 32, 0.1))
    node_exporter: Resources = Field(default_factory=lambda: resources(64, 16, 0.1))
    cadvisor: Resources = Field(default_factory=lambda: resources(256, 64, 0.25))
    exporter: Resources = Field(default_factory=lambda: resources(64, 16, 0.1))


class MonitoringSettings(Model):
    """`cadvisor` off only where cAdvisor cannot run (the e2e host has no image of it): the per-container
    series, the scaler's CPU signal and the container alerts are then absent."""

    enabled: bool = True
    cadvisor: bool = True
    retention_days: int = Field(default=15, ge=1, le=3650)
    scrape_interval_seconds: int = Field(default=15, ge=5, le=300)
    prometheus_host_port: int = Field(default=9090, ge=1024, le=65535)
    alertmanager_host_port: int = Field(default=9093, ge=1024, le=65535)
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    receivers: list[Receiver] = Field(default_factory=list)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    resources: MonitoringResources = Field(default_factory=MonitoringResources)

    @model_validator(mode="after")
    def _unique_receivers(self) -> MonitoringSettings:
        names = [receiver.name for receiver in self.receivers]
        for index, name in enumerate(names):
            if name in names[:index]:
                rule = f"repeats receivers[{names.index(name)}].name; receiver names must be unique"
                raise InvalidKeyError(("receivers", index, "name"), name, rule)
        if self.grafana.enabled and not self.enabled:
            raise InvalidKeyError(("grafana", "enabled"), True, "needs monitoring.enabled")
        return self


def _expirable_prefix(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9_-]*/$", value):
        raise ValueError("must look like 'name/'")
    if value in BACKUP_TOOL_PREFIXES:
        raise ValueError(
            "is owned by a backup tool, which keeps its own retention; expiring it would delete data that "
            "current backups still reference"
        )
    return value


ExpirablePrefix = Annotated[str, AfterValidator(_expirable_prefix)]


class S3BackupSettings(Model):
    enabled: bool = False
    region: str = Field(default="eu-west-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    bucket_prefix: str = Field(default="stories-backup-", pattern=r"^[a-z0-9][a-z0-9-]{2,36}$")
    kms_key_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+$")
    retention_days: int = Field(default=30, ge=1, le=3650)
    noncurrent_version_days: int = Field(default=7, ge=1, le=3650)
    abort_incomplete_upload_days: int = Field(default=1, ge=1, le=30)
    expire_current_prefixes: list[ExpirablePrefix] = Field(default_factory=lambda: ["dumps/"])
    writer: Literal["user", "role"] = "user"
    writer_trusted_principal_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:.+$")
    force_destroy: bool = False
    endpoint: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$",
        description="an S3-compatible endpoint host[:port] instead of AWS's regional one",
    )
    uri_style: Literal["host", "path"] = "host"
    ca_certificate_pem: str | None = Field(
        default=None,
        pattern=r"^-----BEGIN CERTIFICATE-----\n",
        description="PEM of the CA that signed the endpoint's certificate, when it is not a public one",
    )

    @model_validator(mode="after")
    def _role_principal(self) -> S3BackupSettings:
        if self.writer == "role" and not self.writer_trusted_principal_arn:
            raise InvalidKeyError(
                ("writerTrustedPrincipalArn",),
                self.writer_trusted_principal_arn,
                "writer role needs it (who may assume the role)",
            )
        return self


class DailyWindow(Model):
    """A daily window in local time, [start, end); `end` may be before `start` (it crosses midnight)."""

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    start: time
    end: time
    replicas: int = Field(ge=1, le=10)

    def minutes(self) -> set[int]:
        first, last = self.start.hour * 60 + self.start.minute, self.end.hour * 60 + self.end.minute
        if first < last:
            return set(range(first, last))
        return set(range(first, 24 * 60)) | set(range(0, last))

    def contains(self, moment: time) -> bool:
        return moment.hour * 60 + moment.minute in self.minutes()


class Season(Model):
    """A dated period (inclusive) whose factor multiplies the daily base, e.g. summer break 0.3."""

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    start: date
    end: date
    factor: float = Field(gt=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> Season:
        if self.end < self.start:
            raise InvalidKeyError(("end",), self.end, f"must not be before start ({self.start})")
        return self


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _default_windows() -> list[DailyWindow]:
    return [
        DailyWindow.model_validate({"name": "school", "start": "08:00", "end": "18:00", "replicas": 3}),
        DailyWindow.model_validate({"name": "evening", "start": "18:00", "end": "22:00", "replicas": 2}),
        DailyWindow.model_validate({"name": "night", "start": "22:00", "end": "08:00", "replicas": 1}),
    ]


class LoadThresholds(Model):
    """Per-replica capacity: load above it asks for more replicas (the schedule stays the floor)."""

    sessions_per_replica: int = Field(default=40, ge=1)
    requests_per_second_per_replica: float = Field(default=25, gt=0)
    cpu_percent: float = Field(default=70, gt=0, le=100)


class ScalingSettings(Model):
    """The school calendar and load rules of the app scaler. The floor is app.replicas, the cap
    app.maxReplicas: every scheduled value (a window's replicas times the weekend and season factors)
    is bounded to them, the default windows' included."""

    enabled: bool = False
    timezone: TimeZone = "Europe/Berlin"
    windows: list[DailyWindow] = Field(default_factory=_default_windows)
    weekend_factor: float = Field(default=0.5, gt=0, le=1)
    seasons: list[Season] = Field(default_factory=list)
    load: LoadThresholds = Field(default_factory=LoadThresholds)
    scale_down_stable_minutes: int = Field(default=10, ge=1, le=240)
    interval_seconds: int = Field(default=60, ge=5, le=3600)
    signal_window_seconds: int = Field(default=120, ge=10, le=3600)
    resources: Resources = Field(default_factory=lambda: resources(128, 32, 0.1))

    @model_validator(mode="after")
    def _windows_tile_the_day(self) -> ScalingSettings:
        covered: dict[int, str] = {}
        for index, window in enumerate(self.windows):
            for minute in sorted(window.minutes()):
                if minute in covered:
                    rule = f"overlaps window {covered[minute]!r} at {_clock(minute)}"
                    raise InvalidKeyError(("windows", index), window, rule)
                covered[minute] = window.name
        missing = set(range(24 * 60)) - set(covered)
        if missing:  # name where a gap starts: after a covered minute (none when nothing is covered)
            start = min((minute for minute in missing if (minute - 1) % (24 * 60) not in missing), default=0)
            raise InvalidKeyError(("windows",), self.windows, f"do not cover the day: nothing from {_clock(start)}")
        return self

    @model_validator(mode="after")
    def _seasons_apart(self) -> ScalingSettings:
        by_start = sorted(enumerate(self.seasons), key=lambda item: item[1].start)
        for (_, earlier), (index, later) in itertools.pairwise(by_start):
            if later.start <= earlier.end:
                rule = f"falls in season {earlier.name!r} ({earlier.start} to {earlier.end}); seasons must not overlap"
                raise InvalidKeyError(("seasons", index, "start"), later.start, rule)
        return self


class PostgresBackupSettings(Model):
    """pgBackRest: continuous WAL archiving plus full/differential/incremental backups."""

    archive_timeout_seconds: int = Field(default=60, ge=10, le=900)
    full_interval_hours: int = Field(default=168, ge=1)
    diff_interval_hours: int = Field(default=24, ge=1)
    incr_interval_hours: int = Field(default=1, ge=1)
    retention_days: int = Field(default=30, ge=1, le=3650)
    compress_type: Literal["zst", "lz4", "gz", "bz2"] = "zst"
    process_max: int = Field(default=2, ge=1, le=16)

    @model_validator(mode="after")
    def _nested_intervals(self) -> PostgresBackupSettings:
        full, diff, incr = self.full_interval_hours, self.diff_interval_hours, self.incr_interval_hours
        if not full >= diff >= incr:
            key, value = ("diffIntervalHours", diff) if diff > full else ("incrIntervalHours", incr)
            rule = (
                f"intervals must nest: fullIntervalHours ({full}) >= diffIntervalHours ({diff}) >= "
                f"incrIntervalHours ({incr})"
            )
            raise InvalidKeyError((key,), value, rule)
        return self


class FilesBackupSettings(Model):
    """restic: uploads, book PDFs, TLS certificates and a Redis snapshot."""

    interval_minutes: int = Field(default=15, ge=5, le=1440)
    retention_days: int = Field(default=30, ge=1, le=3650)
    verify_read_data_percent: int = Field(default=10, ge=1, le=100)


class BackupSettings(Model):
    s3: S3BackupSettings = Field(default_factory=S3BackupSettings)
    postgres: PostgresBackupSettings = Field(default_factory=PostgresBackupSettings)
    files: FilesBackupSettings = Field(default_factory=FilesBackupSettings)
    verify_interval_hours: int = Field(default=24, ge=1)
    rpo_minutes: int = Field(default=15, ge=1, description="the recovery point objective the schedules must meet")
    rto_minutes: int = Field(default=30, ge=1)
    late_factor: float = Field(default=2, ge=1.1, le=10)
    resources: Resources = Field(default_factory=lambda: resources(512, 128, 0.5))

    @model_validator(mode="after")
    def _meets_rpo(self) -> BackupSettings:
        if self.postgres.archive_timeout_seconds >= self.rpo_minutes * 60:
            raise InvalidKeyError(
                ("postgres", "archiveTimeoutSeconds"),
                self.postgres.archive_timeout_seconds,
                f"postgres.archiveTimeoutSeconds ({self.postgres.archive_timeout_seconds}) must be under the "
                f"RPO ({self.rpo_minutes} min)",
            )
        if self.files.interval_minutes > self.rpo_minutes:
            raise InvalidKeyError(
                ("files", "intervalMinutes"),
                self.files.interval_minutes,
                f"files.intervalMinutes ({self.files.interval_minutes}) must not exceed the RPO "
                f"({self.rpo_minutes} min)",
            )
        return self


class CronJob(Model):
    """One of the app's scheduled calls: GET `path` on the app with `Authorization: Bearer $CRON_SECRET`
    at the times of `schedule` (crontab's five fields, in cron.timezone; README: The app's scheduled calls)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    path: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    schedule: Schedule


def _default_cron_jobs() -> list[CronJob]:
    """The 1001 Stories app's cron routes (app/api/cron/*). Retention first, hard deletion after it, both
    outside the hour clocks change in (02:00-03:00 in Europe); the digest route sends only in its own
    hour 9, so it is called once every hour; the status report once a day."""
    return [
        CronJob.model_validate(each)
        for each in (
            {"name": "data-retention", "path": "/api/cron/data-retention", "schedule": "30 3 * * *"},
            {"name": "hard-delete", "path": "/api/cron/hard-delete", "schedule": "0 4 * * *"},
            {"name": "notification-digest", "path": "/api/cron/notification-digest", "schedule": "0 * * * *"},
            {"name": "server-status", "path": "/api/cron/server-status", "schedule": "0 7 * * *"},
        )
    ]


class CronSettings(Model):
    """The app's scheduled calls, made by the cron service (cron/service.py) on the app network. Times are
    in `timezone` (when unset: scaling.timezone, the stack's time zone). A call waits at most
    `timeoutSeconds`; a call whose last success is older than `lateFactor` times its schedule's longest
    gap alerts (CronCallLate), as a failed one does (CronCallFailed)."""

    enabled: bool = True
    timezone: TimeZone | None = None
    jobs: list[CronJob] = Field(default_factory=_default_cron_jobs)
    timeout_seconds: int = Field(default=300, ge=5, le=3600)
    late_factor: float = Field(default=2, ge=1.1, le=10)
    resources: Resources = Field(default_factory=lambda: resources(128, 32, 0.1))

    @model_validator(mode="after")
    def _unique_names(self) -> CronSettings:
        names = [job.name for job in self.jobs]
        for index, name in enumerate(names):
            if name in names[:index]:
                rule = f"repeats jobs[{names.index(name)}].name; job names must be unique"
                raise InvalidKeyError(("jobs", index, "name"), name, rule)
        return self


_K8S_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _k8s_name(value: str) -> str:
    if not _K8S_NAME.match(value):
        raise ValueError("must be a Kubernetes name (RFC 1123 label): lowercase letters, digits and -, at most 63")
    return value


K8sName = Annotated[str, AfterValidator(_k8s_name)]
ChartVersion = Annotated[str, Field(pattern=r"^v?\d+\.\d+\.\d+$")]


class HelmChart(Model):
    """An operator installed as a Helm release of a pinned chart `version` into `namespace`; `enabled`
    false where the cluster already runs it (the stack then only creates its custom resources)."""

    enabled: bool = True
    version: ChartVersion
    namespace: K8sName


# The charts' default versions match the CRDs the tests check the custom resources against (README:
# The Kubernetes target): one class per operator, so that each key has its own default. Renovate finds each
# version by the comment above it (its chart and repository, as configs/kubernetes/operators.py installs it).
class CloudNativePgChart(HelmChart):
    # renovate: datasource=helm depName=cloudnative-pg registryUrl=https://cloudnative-pg.github.io/charts
    version: ChartVersion = "0.26.0"
    namespace: K8sName = "cnpg-system"


class KedaChart(HelmChart):
    # renovate: datasource=helm depName=keda registryUrl=https://kedacore.github.io/charts
    version: ChartVersion = "2.16.1"
    namespace: K8sName = "keda"


class CertManagerChart(HelmChart):
    # renovate: datasource=helm depName=cert-manager registryUrl=https://charts.jetstack.io
    version: ChartVersion = "v1.17.1"
    namespace: K8sName = "cert-manager"


class KubePrometheusStackChart(HelmChart):
    # renovate: datasource=helm depName=kube-prometheus-stack registryUrl=https://prometheus-community.github.io/helm-charts
    version: ChartVersion = "69.8.2"
    namespace: K8sName = "monitoring"


class EnvoyGatewayChart(HelmChart):
    # renovate: datasource=docker depName=docker.io/envoyproxy/gateway-helm
    version: ChartVersion = "v1.8.3"
    namespace: K8sName = "envoy-gateway-system"


class Operators(Model):
    cloudnative_pg: CloudNativePgChart = Field(default_factory=CloudNativePgChart)
    keda: KedaChart = Field(default_factory=KedaChart)
    cert_manager: CertManagerChart = Field(default_factory=CertManagerChart)
    kube_prometheus_stack: KubePrometheusStackChart = Field(default_factory=KubePrometheusStackChart)
    envoy_gateway: EnvoyGatewayChart = Field(default_factory=EnvoyGatewayChart)


class KubernetesSettings(Model):
    """The Kubernetes target (`target: kubernetes`): where it runs, what it keeps, and its operators.
    `context` is a kubeconfig context (unset: the current one); `version` the Kubernetes minor the manifests
    are validated against; sizes in GiB; `sharedStorageClass` must offer ReadWriteMany (the app's data
    directories are shared by every replica); unset classes take the cluster's default."""

    context: str | None = None
    namespace: K8sName = "stories"
    # CloudNativePG runs its own operand images (with Barman Cloud for the backups), not the Docker target's.
    postgres_image: Annotated[VersionedImage, AfterValidator(_postgres_15)] = "ghcr.io/cloudnative-pg/postgresql:15.13"
    # The files backup's restic (the Docker target's comes from Debian, in the backup image).
    restic_image: PinnedImage = "restic/restic:0.18.1"
    version: str = Field(default="1.33", pattern=r"^1\.\d{2}$")
    database_instances: int = Field(default=1, ge=1, le=9, description="3 for a primary and two standbys")
    database_storage_gb: int = Field(default=20, ge=1)
    redis_storage_gb: int = Field(default=5, ge=1)
    data_storage_gb: int = Field(default=10, ge=1, description="each of app.dataDirs")
    storage_class: str | None = None
    shared_storage_class: str | None = None
    operators: Operators = Field(default_factory=Operators)


class Settings(Model):
    """The root of `<project>:settings`."""

    domain: Hostname
    target: Literal["docker", "kubernetes"] = "docker"
    host: HostSettings = Field(default_factory=HostSettings)
    networks: NetworkSettings = Field(default_factory=NetworkSettings)
    images: Images = Field(default_factory=Images)
    app: AppSettings
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    pgbouncer: PoolSettings = Field(default_factory=PoolSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    cron: CronSettings = Field(default_factory=CronSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @model_validator(mode="after")
    def _scaling_bounds(self) -> Settings:
        """A window the user wrote must be reachable; the defaults are clamped to [app.replicas,
        app.maxReplicas] by the policy, as every scheduled value is."""
        written = self.scaling.windows if "windows" in self.scaling.model_fields_set else []
        for index, window in enumerate(written):
            if window.replicas > self.app.max_replicas:
                raise InvalidKeyError(
                    ("scaling", "windows", index, "replicas"),
                    window.replicas,
                    f"can never be met: above app.maxReplicas ({self.app.max_replicas})",
                )
        if self.target == "kubernetes" and self.app.image is None:
            rule = "target kubernetes needs app.image (a pushed image the cluster can pull), not app.build"
            raise InvalidKeyError(("app", "image"), None, rule)
        if self.scaling.enabled and not self.monitoring.enabled:
            raise InvalidKeyError(
                ("scaling", "enabled"), True, "needs monitoring.enabled (the scaler reads Prometheus)"
            )
        return self

    @property
    def public_url(self) -> str:
        return f"https://{self.domain}"

    @property
    def cron_timezone(self) -> str:
        """The time zone of the app's scheduled calls: cron.timezone, else the stack's (scaling.timezone)."""
        return self.cron.timezone or self.scaling.timezone

    def secret_references(self) -> dict[str, str]:
        """Key path -> the name it expects in `<project>:secrets`."""
        references = {f"app.secretEnv[{index}]": name for index, name in enumerate(self.app.secret_env)}
        for index, receiver in enumerate(self.monitoring.receivers):
            for key, name in receiver.secret_keys().items():
                references[f"monitoring.receivers[{index}].{key}"] = name
        return references
