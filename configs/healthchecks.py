"""Healthcheck commands, as argument lists, so that the containers and the integration tests run the
same command. They run inside the service's own container, so they reach it on 127.0.0.1."""

from __future__ import annotations

from model.settings import Settings
from model.topology import ROLES, Topology

LOCAL = "127.0.0.1"


def postgres(settings: Settings, topo: Topology) -> list[str]:
    """Over the socket as the monitor role, which pg_hba admits there with SCRAM: pg_isready hangs up
    when asked for the password, which Postgres does not log. (Over 127.0.0.1, which pg_hba does not
    admit, every check logged a FATAL line: 17,000 a day burying real authentication failures.)"""
    return [
        "pg_isready",
        "-q",
        "-h",
        topo.postgres_socket_dir,
        "-p",
        str(topo.postgres_port),
        "-d",
        settings.database.name,
        "-U",
        ROLES["monitor"],
    ]


def pgbouncer(topo: Topology) -> list[str]:
    """Logs in to PgBouncer's console as the stats user (password from $PGPASSFILE) and asks it a question."""
    return [
        "psql",
        "-X",
        "-q",
        "-h",
        LOCAL,
        "-p",
        str(topo.pgbouncer_port),
        "-U",
        ROLES["pgbouncer_stats"],
        "-d",
        "pgbouncer",
        "-tA",
        "-c",
        "SHOW VERSION",
    ]


def redis(topo: Topology) -> list[str]:
    """PING as the healthcheck user (password from $REDISCLI_AUTH); redis-cli exits 0 on an error
    reply, so the answer itself is checked."""
    return [
        "sh",
        "-c",
        f"redis-cli --no-auth-warning -h {LOCAL} -p {topo.redis_port} --user healthcheck ping | grep -qx PONG",
    ]


def nginx(topo: Topology) -> list[str]:
    return ["wget", "-q", "-O", "/dev/null", f"http://{LOCAL}:{topo.nginx_http_port}/health"]


def app(settings: Settings) -> list[str]:
    """The app image is Node.js (no curl guaranteed): use its built-in fetch."""
    url = f"http://{LOCAL}:{settings.app.port}{settings.app.health_path}"
    script = f"fetch('{url}').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
    return ["node", "-e", script]


def http_get(port: int, path: str) -> list[str]:
    """For images that ship busybox wget (prom/*, Grafana, cAdvisor)."""
    return ["wget", "-q", "-O", "/dev/null", f"http://{LOCAL}:{port}{path}"]
