"""A stand-in for the 1001 Stories app in the e2e stack: a real HTTP server that behaves as the platform
needs the app to behave, so that the end-to-end checks prove the wiring around it.

It reads the environment the stack gives the real app (PORT, HOSTNAME, DATABASE_URL as a Prisma URL through
PgBouncer, REDIS_URL with an ACL user, NEXTAUTH_URL, NEXTAUTH_SECRET) and serves:

- GET /api/health: a query through PgBouncer (the migration's table must be there), a Redis SET/GET/DEL round
  trip and a file written into each data directory; 200 with every check, or 503 naming the failing check.
- POST /api/files/<dir>/<name> writes the request body into a data directory (uploads, books, covers,
  avatars, generated-images, exports: where the real app writes, under its working directory /app);
  GET /api/files/<dir>/<name> reads it back (from whichever replica answers).
- GET /api/cron/data-retention, hard-delete, notification-digest, server-status: 401 unless
  `Authorization: Bearer $CRON_SECRET`, else 200 `{"success": true}`; each call is recorded in the database,
  and GET /api/cron/calls counts them by path (authorized or not), whichever replica took them.
- GET /metrics: the app's metric contract (configs/metrics.py): `stories_active_sessions`, nothing else.
- POST /api/sessions?seconds=N&count=K opens K sessions kept N seconds (the signal the scaler reads);
  GET /api/sessions counts them; DELETE /api/sessions ends them all.
- GET /api/replica: the container's hostname (which replica answered through nginx).
- GET /api/slow?ms=N: answers after N milliseconds (at most 5000), for latency tests.
- GET / and /library: a page rendered from a query through PgBouncer (what a student opens first).
- POST /api/auth/callback/credentials: a login as the real app's credentials provider does it: a password
  hash check costing about what bcrypt's cost 10 does, a query, a session stored in Redis; 200.

`python3 standin_app.py migrate` is its schema migration (what `npx prisma migrate deploy` is to the real
app): straight to Postgres with DATABASE_URL (it refuses a `pgbouncer=true` URL), under Prisma's advisory
lock, it creates the pgcrypto extension and its tables and records the run (a row with a timestamp).

It runs on Debian bookworm's python3-psycopg (3.1), python3-redis (4.3) and python3-prometheus-client
(0.16), and on newer releases of the three. It never prints a secret: error texts pass through `redact`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

import psycopg
import redis
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from psycopg.conninfo import make_conninfo

HEALTH_PATH = "/api/health"  # the real app's route (app/api/health/route.ts)
METRICS_PATH = "/metrics"
APP_ROOT_ENV = "STORIES_APP_ROOT"  # the real app's process.cwd()
DEFAULT_APP_ROOT = "/app"
# Where the real app writes at run time, under its working directory (its source: lib/file-upload.ts,
# lib/data-export.ts, app/api/generate-image, app/api/books/[id]/generate-cover).
DATA_DIRS = {
    "uploads": "uploads",
    "books": "public/books",
    "covers": "public/covers",
    "avatars": "public/avatars",
    "generated-images": "public/generated-images",
    "exports": "private/exports",
}
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FILE_MAX_BYTES = 1 << 20
CRON_PATHS = tuple(
    f"/api/cron/{name}" for name in ("data-retention", "hard-delete", "notification-digest", "server-status")
)
CRON_CALLS_PATH = "/api/cron/calls"
MIGRATION = "0001_standin"
PRISMA_MIGRATE_LOCK = 72707369  # the advisory lock Prisma Migrate holds while it migrates
MIGRATIONS_TABLE = "standin_migrations"
CRON_CALLS_TABLE = "standin_cron_calls"
SLOW_MAX_MS = 5000
PAGE_PATHS = ("/", "/library")
LOGIN_PATH = "/api/auth/callback/credentials"
# PBKDF2-SHA256 rounds that cost a login about what the real app's bcrypt (cost 10) does: ~50 ms of CPU.
LOGIN_HASH_ROUNDS = 60_000
LOGIN_SESSION_SECONDS = 3600
SESSION_DEFAULT_SECONDS = 300  # the contract counts sessions active in the last 5 minutes
SESSION_MAX_SECONDS = 3600
SESSION_MAX_COUNT = 1000
REQUIRED_ENV = ("DATABASE_URL", "REDIS_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET")
# Prisma's defaults (quaint's PostgreSQL URL parser).
PRISMA_CONNECT_TIMEOUT_SECONDS = 5
PRISMA_POOL_TIMEOUT_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 5.0

_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """`text` with every secret this process knows replaced: errors and logs pass through here."""
    for value in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(value, "[secret]")
    return text


def remember_secret(value: str | None) -> None:
    if value:
        _SECRETS.add(value)


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    sys.stdout.write(f"{stamp} {redact(message)}\n")
    sys.stdout.flush()


def describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return redact(f"{type(error).__name__}: {text}")


# ---------------------------------------------------------------------------------------------------
# DATABASE_URL: a Prisma connection URL, translated to libpq parameters


class ConfigError(ValueError):
    """A setting the stand-in cannot use; its message never contains a secret."""


@dataclass(frozen=True)
class DatabaseConfig:
    """libpq keyword parameters plus what Prisma's own pool does with the rest of the URL."""

    params: dict[str, str]
    pool_size: int
    pool_timeout: float | None
    pgbouncer: bool
    schema: str | None

    def describe(self) -> str:
        shown = {key: value for key, value in self.params.items() if key != "password"}
        return " ".join(f"{key}={value}" for key, value in sorted(shown.items()))


def _prisma_tls(query: dict[str, str]) -> dict[str, str]:
    """Prisma's `sslmode` (disable, prefer, require; anything else is `prefer`), `sslcert` (a root
    certificate to trust, not a client certificate) and `sslaccept` (`strict` checks the certificate
    and the host name; the default, `accept_invalid_certs`, checks nothing).

    With `require` and an `sslcert` file, the stand-in always checks the chain against that file
    (libpq `verify-ca`), and with `sslaccept=strict` the host name too (`verify-full`). Prisma itself
    checks nothing unless `sslaccept=strict`: the stand-in is stricter there on purpose, so that the
    e2e stack proves that the CA file reaches the app and that PgBouncer's certificate chains to it.
    """
    mode = query.get("sslmode", "prefer")
    mode = mode if mode in ("disable", "prefer", "require") else "prefer"
    root = query.get("sslcert")
    strict = query.get("sslaccept", "accept_invalid_certs") != "accept_invalid_certs"
    if mode != "require":
        return {"sslmode": mode}
    if strict:
        return {"sslmode": "verify-full", "sslrootcert": root or "/etc/ssl/certs/ca-certificates.crt"}
    if root:
        return {"sslmode": "verify-ca", "sslrootcert": root}
    return {"sslmode": "require"}


def _positive_int(query: dict[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(f"DATABASE_URL: {name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def parse_prisma_url(url: str) -> DatabaseConfig:
    """The URL as Prisma reads it (user, password and database percent-decoded; `host` in the query
    wins over the authority; port 5432 and database `postgres` by default)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL: the scheme must be postgresql:// or postgres://")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        port = parts.port or 5432
    except ValueError as error:
        raise ConfigError("DATABASE_URL: the port is not a number") from error
    params = {
        "host": query.get("host") or parts.hostname or "localhost",
        "port": str(port),
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        **_prisma_tls(query),
    }
    connect_timeout = _positive_int(query, "connect_timeout", PRISMA_CONNECT_TIMEOUT_SECONDS)
    if connect_timeout:
        params["connect_timeout"] = str(connect_timeout)
    for name in ("application_name", "options"):
        if query.get(name):
            params[name] = query[name]
    pool_timeout = _positive_int(query, "pool_timeout", int(PRISMA_POOL_TIMEOUT_SECONDS))
    return DatabaseConfig(
        params={key: value for key, value in params.items() if value != ""},
        pool_size=max(1, _positive_int(query, "connection_limit", 2 * (os.cpu_count() or 1) + 1) or 1),
        pool_timeout=float(pool_timeout) if pool_timeout else None,
        pgbouncer=query.get("pgbouncer", "false") == "true",
        schema=query.get("schema") or None,
    )


# ---------------------------------------------------------------------------------------------------
# The database pool: persistent connections up to `connection_limit`, as Prisma keeps them


class PoolTimeoutError(RuntimeError):
    pass


class DatabasePool:
    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = psycopg.connect(make_conninfo("", **self.config.params), autocommit=True)
        if self.config.pgbouncer:
            conn.prepare_threshold = None  # PgBouncer in transaction mode: no named prepared statements
        if self.config.schema:  # what Prisma sends in pgbouncer mode, where a startup parameter would not do
            quoted = self.config.schema.replace('"', '""')
            self._run(conn, f'SET search_path = "{quoted}"', give_back=False)
        return conn

    def _take(self) -> tuple[psycopg.Connection[Any], bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
        return self._connect(), False

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._idle.append(conn)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.config.pool_timeout):
            raise PoolTimeoutError(f"no free connection in the pool of {self.config.pool_size} within the pool timeout")
        try:
            yield
        finally:
            self._slots.release()

    def _rows(
        self, conn: psycopg.Connection[Any], sql: str, params: tuple[object, ...] = (), give_back: bool = True
    ) -> list[tuple[Any, ...]]:
        """Every row; a connection that failed is closed, never pooled again."""
        try:
            cursor = conn.execute(sql, params or None)
            rows = cursor.fetchall() if cursor.description else []
        except BaseException:
            conn.close()
            raise
        if give_back:
            self._give_back(conn)
        return rows

    def _run(self, conn: psycopg.Connection[Any], sql: str, give_back: bool = True) -> object:
        """The first column of the first row."""
        rows = self._rows(conn, sql, give_back=give_back)
        return rows[0][0] if rows else None

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run `sql` on a pooled connection. A reused connection that fails (PgBouncer restarted, say)
        is dropped and the query tried once on a new one; a new connection's failure is the answer."""
        with self._slot():
            conn, reused = self._take()
            try:
                return self._rows(conn, sql, params)
            except psycopg.OperationalError:
                if not reused:
                    raise
            return self._rows(self._connect(), sql, params)

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> object:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()


# ---------------------------------------------------------------------------------------------------
# Sessions: the `stories_active_sessions` signal, driven by requests


@dataclass
class Sessions:
    _expiry: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, seconds: int, count: int) -> list[str]:
        deadline = time.monotonic() + seconds
        ids = [secrets.token_hex(8) for _ in range(count)]
        with self._lock:
            self._expiry.update(dict.fromkeys(ids, deadline))
        return ids

    def active(self) -> int:
        now = time.monotonic()
        with self._lock:
            for key in [key for key, deadline in self._expiry.items() if deadline <= now]:
                del self._expiry[key]
            return len(self._expiry)

    def clear(self) -> int:
        with self._lock:
            ended = len(self._expiry)
            self._expiry.clear()
        return ended


# ---------------------------------------------------------------------------------------------------
# The app's state and its health checks


@dataclass
class App:
    replica: str
    data_dirs: dict[str, Path]
    database: DatabasePool | None
    database_error: str | None
    redis_client: redis.Redis | None
    redis_error: str | None
    sessions: Sessions
    registry: CollectorRegistry

    def check_env(self) -> None:
        missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"not set: {', '.join(missing)}")
        if urlsplit(os.environ["NEXTAUTH_URL"]).scheme not in ("http", "https"):
            raise ConfigError("NEXTAUTH_URL must be an http(s) URL")

    def check_database(self) -> None:
        """A query through PgBouncer, and the migration's table with its record (as the real app's pages
        fail without their tables)."""
        if self.database is None:
            raise ConfigError(self.database_error or "DATABASE_URL is not set")
        answer = self.database.scalar("SELECT 1")
        if answer != 1:
            raise RuntimeError(f"SELECT 1 answered {answer!r}")
        if self.database.scalar(f"SELECT to_regclass('{MIGRATIONS_TABLE}') IS NOT NULL") is not True:
            raise RuntimeError(f"the migrations have not run: no table {MIGRATIONS_TABLE}")
        if not self.database.scalar(f"SELECT count(*) FROM {MIGRATIONS_TABLE} WHERE name = %s", (MIGRATION,)):
            raise RuntimeError(f"the migrations have not run: {MIGRATION} is not recorded")

    def check_redis(self) -> None:
        if self.redis_client is None:
            raise ConfigError(self.redis_error or "REDIS_URL is not set")
        # A key of its own per check: concurrent checks on one replica must not read each other's value.
        value = secrets.token_hex(8)
        key = f"stories:standin:health:{self.replica}:{value}"
        self.redis_client.set(key, value, ex=60)
        stored = self.redis_client.get(key)
        self.redis_client.delete(key)
        if stored != value.encode():
            raise RuntimeError("GET did not return the value just SET")

    def check_uploads(self) -> None:
        """A file written into each data directory (the check keeps its first name, "uploads")."""
        failed = []
        for name, directory in self.data_dirs.items():
            try:
                (directory / f"health-{self.replica}.txt").write_text(
                    f"{datetime.now(UTC).isoformat()} {self.replica}\n"
                )
            except OSError as error:
                failed.append(f"{name} ({directory}): {describe(error)}")
        if failed:
            raise RuntimeError("; ".join(failed))

    def data_file(self, directory: str, name: str) -> Path:
        if directory not in self.data_dirs:
            raise BadRequestError(f"no data directory {directory!r}: one of {', '.join(self.data_dirs)}")
        if not FILE_NAME.match(name):
            raise BadRequestError("a file name is letters, digits, '.', '_' and '-', at most 128")
        return self.data_dirs[directory] / name

    def cron_call(self, path: str, authorization: str | None) -> bool:
        """The real routes' check (a bearer token equal to CRON_SECRET, compared in constant time); the call
        is recorded either way. Stricter than two of the real routes, which fall back to NEXTAUTH_SECRET."""
        secret = os.environ.get("CRON_SECRET") or ""
        given = (authorization or "").removeprefix("Bearer ") if (authorization or "").startswith("Bearer ") else ""
        authorized = bool(secret) and hmac.compare_digest(given.encode(), secret.encode())
        if self.database is None:
            raise ConfigError(self.database_error or "DATABASE_URL is not set")
        self.database.rows(
            f"INSERT INTO {CRON_CALLS_TABLE} (path, authorized, replica) VALUES (%s, %s, %s)",
            (path, authorized, self.replica),
        )
        return authorized

    def cron_calls(self) -> dict[str, dict[str, int]]:
        if self.database is None:
            raise ConfigError(self.database_error or "DATABASE_URL is not set")
        counted: dict[str, dict[str, int]] = {path: {"authorized": 0, "unauthorized": 0} for path in CRON_PATHS}
        for path, authorized, count in self.database.rows(
            f"SELECT path, authorized, count(*) FROM {CRON_CALLS_TABLE} GROUP BY path, authorized"
        ):
            counted.setdefault(path, {"authorized": 0, "unauthorized": 0})
            counted[path]["authorized" if authorized else "unauthorized"] = int(count)
        return counted

    def page(self, path: str) -> bytes:
        """A server-rendered page: one query through PgBouncer, as the real pages read their data."""
        if self.database is None:
            raise ConfigError(self.database_error or "DATABASE_URL is not set")
        migrations = self.database.scalar(f"SELECT count(*) FROM {MIGRATIONS_TABLE}")
        title = "Library" if path == "/library" else "1001 Stories"
        return (
            f"<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>{migrations} migration(s); served by {self.replica}</p></body></html>\n"
        ).encode()

    def login(self, body: bytes) -> None:
        """A credentials login: the password hash check, a query, the session kept in Redis. (Any name and
        password are accepted: the stand-in has no users, and the load test wants the work, not a check.)"""
        if self.database is None or self.redis_client is None:
            raise ConfigError(self.database_error or self.redis_error or "DATABASE_URL or REDIS_URL is not set")
        salt = secrets.token_bytes(16)
        hashlib.pbkdf2_hmac("sha256", body or b"-", salt, LOGIN_HASH_ROUNDS)
        self.database.scalar("SELECT now()")
        token = secrets.token_urlsafe(24)
        self.redis_client.set(f"stories:standin:session:{token}", self.replica, ex=LOGIN_SESSION_SECONDS)

    def health(self) -> tuple[int, dict[str, object]]:
        checks: dict[str, Callable[[], None]] = {
            "env": self.check_env,
            "database": self.check_database,
            "redis": self.check_redis,
            "uploads": self.check_uploads,
        }
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as error:
                results[name] = describe(error)
        failed = {name: result for name, result in results.items() if result != "ok"}
        body: dict[str, object] = {
            "status": "unhealthy" if failed else "healthy",
            "timestamp": datetime.now(UTC).isoformat(),
            "replica": self.replica,
            "checks": results,
        }
        if failed:
            body["error"] = "; ".join(f"{name}: {result}" for name, result in failed.items())
        return (HTTPStatus.SERVICE_UNAVAILABLE if failed else HTTPStatus.OK), body


def make_database(url: str | None) -> tuple[DatabasePool | None, str | None]:
    if not url:
        return None, "DATABASE_URL is not set"
    try:
        config = parse_prisma_url(url)
    except ConfigError as error:
        return None, str(error)
    remember_secret(config.params.get("password"))
    remember_secret(urlsplit(url).password)  # as written in the URL, percent-encoded
    log(f"database: {config.describe()} pool={config.pool_size} pgbouncer={str(config.pgbouncer).lower()}")
    return DatabasePool(config), None


def make_redis(url: str | None) -> tuple[redis.Redis | None, str | None]:
    if not url:
        return None, "REDIS_URL is not set"
    parts = urlsplit(url)
    remember_secret(unquote(parts.password or ""))
    remember_secret(parts.password)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
    except ValueError as error:
        return None, f"REDIS_URL: {describe(error)}"
    log(f"redis: {parts.hostname}:{parts.port or 6379} user={unquote(parts.username or 'default')}")
    return client, None


def make_app(environ: dict[str, str]) -> App:
    remember_secret(environ.get("NEXTAUTH_SECRET"))
    remember_secret(environ.get("DATABASE_URL"))
    remember_secret(environ.get("REDIS_URL"))
    database, database_error = make_database(environ.get("DATABASE_URL"))
    redis_client, redis_error = make_redis(environ.get("REDIS_URL"))
    sessions = Sessions()
    registry = CollectorRegistry(auto_describe=True)
    gauge = Gauge(
        "stories_active_sessions",
        "Sessions with activity in the last 5 minutes, counted by the replica that served their last request.",
        registry=registry,
    )
    gauge.set_function(lambda: float(sessions.active()))
    return App(
        replica=socket.gethostname(),
        data_dirs={
            name: Path(environ.get(APP_ROOT_ENV) or DEFAULT_APP_ROOT) / relative for name, relative in DATA_DIRS.items()
        },
        database=database,
        database_error=database_error,
        redis_client=redis_client,
        redis_error=redis_error,
        sessions=sessions,
        registry=registry,
    )


# ---------------------------------------------------------------------------------------------------
# HTTP


class BadRequestError(ValueError):
    pass


def bounded_int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    raw = values[0]
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequestError(f"{name} must be an integer from {low} to {high}")
    return int(raw)


class Handler(BaseHTTPRequestHandler):
    server_version = "stories-standin/1.0"
    timeout = 15  # seconds a client may stay silent on its connection
    app: App  # set on the subclass made by `serve`
    _status = 0

    def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        self.send_header("X-Stories-Replica", self.app.replica)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, body: dict[str, object], head: bool = False) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json", head)

    def _route(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self._status = 0
        try:
            self._dispatch(method, parts.path, query)
        except BadRequestError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception as error:
            log(f"error: {method} {parts.path}: {describe(error)}")
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
        finally:
            elapsed = (time.monotonic() - started) * 1000
            log(f'{self.client_address[0]} "{method} {self.path}" {self._status} {elapsed:.1f}ms')

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        head = method == "HEAD"
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            if head:  # as the real app: HEAD answers 200 without checking anything
                self._json(HTTPStatus.OK, {}, head=True)
                return
            status, body = self.app.health()
            if status != HTTPStatus.OK:
                log(f"health: {body['error']}")
            self._json(status, body)
        elif path == METRICS_PATH and method in ("GET", "HEAD"):
            self._send(HTTPStatus.OK, generate_latest(self.app.registry), CONTENT_TYPE_LATEST, head)
        elif path == "/api/replica" and method in ("GET", "HEAD"):
            self._json(HTTPStatus.OK, {"replica": self.app.replica}, head)
        elif path == "/api/slow" and method in ("GET", "HEAD"):
            delay = bounded_int(query, "ms", 0, 0, SLOW_MAX_MS)
            time.sleep(delay / 1000)
            self._json(HTTPStatus.OK, {"replica": self.app.replica, "slept_ms": delay}, head)
        elif path == "/api/sessions":
            self._sessions(method, query)
        elif path.startswith("/api/files/"):
            self._files(method, path.removeprefix("/api/files/"))
        elif path in CRON_PATHS and method == "GET":
            if self.app.cron_call(path, self.headers.get("Authorization")):
                self._json(HTTPStatus.OK, {"success": True, "replica": self.app.replica, "path": path})
            else:
                self._json(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
        elif path == CRON_CALLS_PATH and method == "GET":
            self._json(HTTPStatus.OK, {"replica": self.app.replica, "calls": self.app.cron_calls()})
        elif path in PAGE_PATHS and method in ("GET", "HEAD"):
            self._send(HTTPStatus.OK, self.app.page(path), "text/html; charset=utf-8", head)
        elif path == LOGIN_PATH and method == "POST":
            self.app.login(self._body)
            self._json(HTTPStatus.OK, {"replica": self.app.replica, "url": "/library"})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"}, head)

    def _files(self, method: str, rest: str) -> None:
        directory, _, name = rest.partition("/")
        target = self.app.data_file(directory, name)
        if method == "POST":
            target.write_bytes(self._body)
            body = {"replica": self.app.replica, "dir": directory, "name": name, "bytes": len(self._body)}
            self._json(HTTPStatus.CREATED, body)
        elif method in ("GET", "HEAD"):
            try:
                content = target.read_bytes()
            except FileNotFoundError:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such file"}, method == "HEAD")
                return
            self._send(HTTPStatus.OK, content, "application/octet-stream", method == "HEAD")
        else:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    def _sessions(self, method: str, query: dict[str, list[str]]) -> None:
        sessions = self.app.sessions
        if method == "POST":
            seconds = bounded_int(query, "seconds", SESSION_DEFAULT_SECONDS, 1, SESSION_MAX_SECONDS)
            count = bounded_int(query, "count", 1, 1, SESSION_MAX_COUNT)
            opened = sessions.open(seconds, count)
            body: dict[str, object] = {"opened": len(opened), "seconds": seconds, "active": sessions.active()}
            self._json(HTTPStatus.OK, {"replica": self.app.replica, **body})
        elif method == "DELETE":
            self._json(HTTPStatus.OK, {"replica": self.app.replica, "ended": sessions.clear(), "active": 0})
        elif method in ("GET", "HEAD"):
            self._json(HTTPStatus.OK, {"replica": self.app.replica, "active": sessions.active()}, method == "HEAD")
        else:
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request is written by `_route`, after the answer."""

    def log_message(self, format: str, *args: Any) -> None:
        log(f"{self.client_address[0]} {format % args}")

    _body = b""

    def _read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > FILE_MAX_BYTES:
            self.rfile.read(length)
            self._body = b""
            raise BadRequestError(f"a body is at most {FILE_MAX_BYTES} bytes")
        self._body = self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._with_body("POST")

    def do_DELETE(self) -> None:
        self._with_body("DELETE")

    def _with_body(self, method: str) -> None:
        try:
            self._read_body()
        except BadRequestError as error:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(error)})
            return
        self._route(method)


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close waits for the requests in flight
    block_on_close = True


def serve(app: App, host: str, port: int) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = Server((host, port), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def stop_signals() -> Callable[[], int]:
    """Catch SIGTERM (Docker's stop signal) and SIGINT; the function returned blocks until one
    arrives and returns its number."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(number: int, _frame: FrameType | None) -> None:
        received.append(number)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.getpid() == 1:
        # PID 1 inherits orphaned processes (of `docker exec` healthchecks, say): let the kernel reap them.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    def wait() -> int:
        stop.wait()
        return received[0]

    return wait


# ---------------------------------------------------------------------------------------------------
# The migration: `standin_app.py migrate`


MIGRATION_SQL = (
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_by text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    f"""CREATE TABLE IF NOT EXISTS {CRON_CALLS_TABLE} (
        id bigserial PRIMARY KEY,
        path text NOT NULL,
        authorized boolean NOT NULL,
        replica text NOT NULL,
        called_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
)


def migrate(environ: dict[str, str]) -> int:
    """What `npx prisma migrate deploy` is to the real app: straight to Postgres (never through PgBouncer's
    transaction pool), under Prisma Migrate's session-level advisory lock, as the app's role, create the
    pgcrypto extension (trusted: the database's owner may) and the tables, and record this run. Exit 0 when
    done; 1 when the database refused (the message says why, no secret); 2 for a URL it cannot use."""
    url = environ.get("DATABASE_URL")
    remember_secret(url)
    if not url:
        log("migrate: DATABASE_URL is not set")
        return 2
    try:
        config = parse_prisma_url(url)
    except ConfigError as error:
        log(f"migrate: {error}")
        return 2
    remember_secret(config.params.get("password"))
    remember_secret(urlsplit(url).password)
    if config.pgbouncer:
        log(
            "migrate: DATABASE_URL says pgbouncer=true: a migration holds a session-level advisory lock, which "
            "PgBouncer's transaction pool would hand to another client; give it Postgres directly"
        )
        return 2
    log(f"migrate: {config.describe()}")
    started = time.monotonic()
    try:
        with psycopg.connect(make_conninfo("", **config.params), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (PRISMA_MIGRATE_LOCK,))
            try:
                with conn.transaction():
                    for statement in MIGRATION_SQL:
                        conn.execute(statement)
                    row = conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (name, checksum, applied_by) "
                        "VALUES (%s, encode(digest(%s::text, 'sha256'), 'hex'), %s) RETURNING applied_at, checksum",
                        (MIGRATION, MIGRATION, socket.gethostname()),
                    ).fetchone()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PRISMA_MIGRATE_LOCK,))
    except (psycopg.Error, OSError) as error:
        log(f"migrate: failed: {describe(error)}")
        return 1
    assert row is not None
    elapsed = time.monotonic() - started
    log(f"migrate: applied {MIGRATION} at {row[0].isoformat()} (checksum {row[1][:16]}) in {elapsed:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments == ["migrate"]:
        return migrate(dict(os.environ))
    if arguments:
        log(f"usage: standin_app.py [migrate]; got {' '.join(arguments)!r}")
        return 2
    wait_for_stop = stop_signals()
    environ = dict(os.environ)
    host, port = environ.get("HOSTNAME") or "0.0.0.0", int(environ.get("PORT") or "3000")
    app = make_app(environ)
    server = serve(app, host, port)
    log(f"listening on {host}:{port} as replica {app.replica}; data directories: {sorted(app.data_dirs)}")
    number = wait_for_stop()
    log(f"received {signal.Signals(number).name}: finishing the requests in flight")
    server.shutdown()
    server.server_close()
    if app.database is not None:
        app.database.close()
    if app.redis_client is not None:
        app.redis_client.close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
