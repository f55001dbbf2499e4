"""A stand-in for the 1001 Stories app in the e2e stack: a real HTTP server that behaves as the platform
needs the app to behave, so that the end-to-end checks prove the wiring around it.

It reads the environment the stack gives the real app (PORT, HOSTNAME, DATABASE_URL as a Prisma URL through
PgBouncer, REDIS_URL with an ACL user, NEXTAUTH_URL, NEXTAUTH_SECRET) and serves:

- GET /api/health: a query through PgBouncer, a Redis SET/GET/DEL round trip and a file written into the
  uploads directory; 200 with every check, or 503 naming the failing check and its error.
- GET /metrics: the app's metric contract (configs/metrics.py): `stories_active_sessions`, nothing else.
- POST /api/sessions?seconds=N&count=K opens K sessions kept N seconds (the signal the scaler reads);
  GET /api/sessions counts them; DELETE /api/sessions ends them all.
- GET /api/replica: the container's hostname (which replica answered through nginx).
- GET /api/slow?ms=N: answers after N milliseconds (at most 5000), for latency tests.

It runs on Debian bookworm's python3-psycopg (3.1), python3-redis (4.3) and python3-prometheus-client
(0.16), and on newer releases of the three. It never prints a secret: error texts pass through `redact`.
"""

from __future__ import annotations

import json
import os
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
UPLOADS_DIR_ENV = "STORIES_UPLOADS_DIR"
DEFAULT_UPLOADS_DIR = "/app/uploads"
SLOW_MAX_MS = 5000
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

    def _run(self, conn: psycopg.Connection[Any], sql: str, give_back: bool = True) -> object:
        """The first column of the first row; a connection that failed is closed, never pooled again."""
        try:
            row = conn.execute(sql).fetchone()
        except BaseException:
            conn.close()
            raise
        if give_back:
            self._give_back(conn)
        return row[0] if row else None

    def scalar(self, sql: str) -> object:
        """Run `sql` on a pooled connection. A reused connection that fails (PgBouncer restarted, say)
        is dropped and the query tried once on a new one; a new connection's failure is the answer."""
        with self._slot():
            conn, reused = self._take()
            try:
                return self._run(conn, sql)
            except psycopg.OperationalError:
                if not reused:
                    raise
            return self._run(self._connect(), sql)

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
    uploads_dir: Path
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
        if self.database is None:
            raise ConfigError(self.database_error or "DATABASE_URL is not set")
        answer = self.database.scalar("SELECT 1")
        if answer != 1:
            raise RuntimeError(f"SELECT 1 answered {answer!r}")

    def check_redis(self) -> None:
        if self.redis_client is None:
            raise ConfigError(self.redis_error or "REDIS_URL is not set")
        key, value = f"stories:standin:health:{self.replica}", secrets.token_hex(8)
        self.redis_client.set(key, value, ex=60)
        stored = self.redis_client.get(key)
        self.redis_client.delete(key)
        if stored != value.encode():
            raise RuntimeError("GET did not return the value just SET")

    def check_uploads(self) -> None:
        target = self.uploads_dir / f"health-{self.replica}.txt"
        target.write_text(f"{datetime.now(UTC).isoformat()} {self.replica}\n")

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
        uploads_dir=Path(environ.get(UPLOADS_DIR_ENV) or DEFAULT_UPLOADS_DIR),
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
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"}, head)

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

    def _read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 16))

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._read_body()
        self._route("POST")

    def do_DELETE(self) -> None:
        self._read_body()
        self._route("DELETE")


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


def main() -> int:
    wait_for_stop = stop_signals()
    environ = dict(os.environ)
    host, port = environ.get("HOSTNAME") or "0.0.0.0", int(environ.get("PORT") or "3000")
    app = make_app(environ)
    server = serve(app, host, port)
    log(f"listening on {host}:{port} as replica {app.replica}; uploads in {app.uploads_dir}")
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
