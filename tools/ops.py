"""What the operator commands (`make status`, `make db-top`, `make db-maintain`, `make psql`, `make logs`)
share: the stack's settings, a way to run a command inside one of the stack's containers, and the
credentials of the least-privileged roles.

Collection goes through a `Runner`: "run this argument list in the container of that service, with
these environment variables, and give me its output". `DockerCli` is the one that reaches a deployed
stack (the docker CLI on `host.dockerHost`, like the backup targets); the integration tests run the
same argument lists against the real servers on loopback with a local one.

Secrets never travel on a command line: a password reaches the command in the container through the
docker CLI's own environment (`docker exec -e NAME`, without a value), so neither `ps` on the operator's
machine nor the container's configuration shows it, and nothing printed contains it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from components.container import LABEL_PREFIX
from configs.monitoring import CONFIG_DIR as MONITORING_CONFIG_DIR
from model.loading import ConfigError
from model.settings import Settings
from model.topology import ROLES, Topology

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("table", "json")
DEFAULT_TIMEOUT = 120.0

# Where each credential lives in a deployed stack (components/monitoring.py, components/app.py).
MONITOR_PASSWORD_FILE = f"{MONITORING_CONFIG_DIR}/postgres-exporter/password"
MONITOR_PASSWORD_SERVICE = "postgres-exporter"
REDIS_EXPORTER_SERVICE = "redis-exporter"
REDIS_EXPORTER_USER = "exporter"
APP_CREDENTIAL_SERVICE = "app-1"


class UsageError(Exception):
    """A user's mistake on the command line: printed as one line, exit 2."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        super().__init__(f"{key} = {value!r}: {rule}")


def known_stacks(root: Path = ROOT) -> list[str]:
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in root.glob("Pulumi.*.yaml"))


def load_stack(stack: str, root: Path = ROOT) -> Settings:
    """The stack's validated settings, or a UsageError naming STACK."""
    from tools.plan import settings_for

    if not (root / f"Pulumi.{stack}.yaml").exists():
        raise UsageError("STACK", stack, f"no Pulumi.{stack}.yaml; known stacks: {', '.join(known_stacks(root))}")
    try:
        settings: Settings = settings_for(stack)
    except ConfigError as error:
        raise UsageError("STACK", stack, f"Pulumi.{stack}.yaml is not valid: {error}") from error
    return settings


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise UsageError("FORMAT", value, f"must be {' or '.join(FORMATS)}")
    return value


def check_count(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise UsageError(key, value, f"must be a whole number from {low} to {high}")
    return number


def first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


# ---------------------------------------------------------------------------------------------------
# Running commands


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str


class CommandError(Exception):
    """A command in a container ended badly. The message names the service, the program and the first
    line of what it said; never its environment (where the secrets are)."""

    def __init__(self, service: str, program: str, detail: str) -> None:
        super().__init__(f"{service}: {program} failed: {detail or 'no output'}")
        self.service = service


class Runner(Protocol):
    def run(
        self,
        service: str,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> RunResult:
        """Run `argv` in the container of `service` (with `env` added to its environment, `stdin` fed
        to it); its output, or CommandError."""
        ...


class Engine(Protocol):
    """The docker CLI itself, for what is not inside a container: ps, inspect, stats, logs."""

    stack: str

    def docker(self, *args: str, timeout: float | None = DEFAULT_TIMEOUT) -> str: ...

    def docker_bytes(self, *args: str, timeout: float | None = DEFAULT_TIMEOUT) -> bytes: ...


def container_name(stack: str, service: str) -> str:
    return f"{stack}-{service}"


_REPLICA = re.compile(r"^app-(\d+)$")


def postgres_data_address(engine: Engine) -> str:
    """The Postgres container's address on the data network. From inside the container its name can also
    resolve to its address on its egress network (its hostname, that network's alias), where pg_hba admits
    no client: which one Docker gives differs between runs."""
    template = f'{{{{(index .NetworkSettings.Networks "{engine.stack}-data").IPAddress}}}}'
    return engine.docker("inspect", "--format", template, container_name(engine.stack, "postgres")).strip()


def running_container(engine: Engine, service: str) -> str:
    """The container of `service` to exec into or read: `<stack>-<service>`, except for an app replica
    ("app-2"), whose name carries its generation (components/container.py): the newest running container
    with its labels, or its plain name when none runs (the docker CLI then says what is wrong)."""
    match = _REPLICA.match(service)
    if match is None:
        return container_name(engine.stack, service)
    labels = [
        f"{LABEL_PREFIX}.stack={engine.stack}",
        f"{LABEL_PREFIX}.service=app",
        f"{LABEL_PREFIX}.replica={match[1]}",
    ]
    listed = engine.docker(
        "ps", *(part for label in labels for part in ("--filter", f"label={label}")), "--format", "{{.Names}}"
    )
    names = listed.split()
    return names[0] if names else container_name(engine.stack, service)  # docker ps lists the newest first


class DockerCli:
    """The docker CLI on the stack's Docker host (`docker -H <host.dockerHost>`)."""

    def __init__(self, host: str, stack: str, docker: str = "docker") -> None:
        self.host = host
        self.stack = stack
        self.binary = docker

    def prefix(self) -> list[str]:
        return [self.binary, "-H", self.host]

    def _call(self, args: Sequence[str], stdin: bytes | None, env: Mapping[str, str], timeout: float | None) -> bytes:
        what = args[0] if args else "docker"
        try:
            result = subprocess.run(
                [*self.prefix(), *args],
                input=stdin,
                capture_output=True,
                env={**os.environ, **env},
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as error:
            raise CommandError("docker", self.binary, "the docker CLI is not installed here") from error
        except subprocess.TimeoutExpired as error:
            raise CommandError("docker", what, f"no answer within {timeout:.0f} s") from error
        if result.returncode != 0:
            raise CommandError("docker", what, first_line(result.stderr.decode(errors="replace")))
        return result.stdout

    def docker(self, *args: str, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        return self._call(args, None, {}, timeout).decode(errors="replace")

    def docker_bytes(self, *args: str, timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
        return self._call(args, None, {}, timeout)

    def logs(self, service: str, since: str, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """The service's container log since `since` (RFC 3339), both streams as the container wrote them."""
        argv = [*self.prefix(), "logs", "--since", since, running_container(self, service)]
        try:
            result = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as error:
            raise CommandError("docker", "logs", str(error)) from error
        if result.returncode != 0:
            raise CommandError("docker", "logs", first_line(result.stdout.decode(errors="replace")))
        return result.stdout.decode(errors="replace")

    def exec_argv(
        self, service: str, argv: Sequence[str], env_names: Sequence[str], interactive: bool, tty: bool
    ) -> list[str]:
        """`docker exec` of `argv` in the service's container; `env_names` are passed without their value
        (the docker CLI takes it from its own environment)."""
        options = ["-i"] if interactive else []
        if tty:
            options.append("-t")
        for name in env_names:
            options += ["-e", name]
        return [*self.prefix(), "exec", *options, running_container(self, service), *argv]

    def run(
        self,
        service: str,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> RunResult:
        env = dict(env or {})
        command = self.exec_argv(service, argv, sorted(env), interactive=stdin is not None, tty=False)
        try:
            result = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                env={**os.environ, **env},
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as error:
            raise CommandError("docker", self.binary, "the docker CLI is not installed here") from error
        except subprocess.TimeoutExpired as error:
            raise CommandError(service, argv[0], f"no answer within {timeout:.0f} s") from error
        if result.returncode != 0:
            raise CommandError(service, argv[0], first_line(result.stderr) or first_line(result.stdout))
        return RunResult(result.stdout, result.stderr)

    def containers(self) -> list[str]:
        """Names of the stack's containers (every state), by the stack label the components set."""
        listed = self.docker(
            "ps", "-a", "--filter", f"label={LABEL_PREFIX}.stack={self.stack}", "--format", "{{.Names}}"
        )
        return sorted(listed.split())


# ---------------------------------------------------------------------------------------------------
# Credentials of the least-privileged roles


class Credentials(Protocol):
    def monitor_password(self) -> str:
        """stories_monitor (pg_monitor): every pg_stat_* view, pg_stat_statements, settings; no app data."""
        ...

    def redis_exporter_password(self) -> str:
        """Redis's `exporter` ACL user: INFO, CONFIG GET and the like; no key contents."""
        ...

    def app_password(self) -> str:
        """The app's role: owner of the app database, the only role below the superuser that may VACUUM
        and ANALYZE its tables (Postgres 15 has no pg_maintain)."""
        ...


@dataclass(frozen=True)
class StaticCredentials:
    monitor: str = ""
    redis_exporter: str = ""
    app: str = ""

    def monitor_password(self) -> str:
        return self.monitor

    def redis_exporter_password(self) -> str:
        return self.redis_exporter

    def app_password(self) -> str:
        return self.app


def env_value(entries: Sequence[str], name: str) -> str | None:
    for entry in entries:
        key, _, value = entry.partition("=")
        if key == name:
            return value
    return None


def password_of_url(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def single_file_of_tar(archive: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return extracted.read().decode().strip()
    raise ValueError("the archive holds no file")


class DockerCredentials:
    """Reads each credential from the container that already holds it (the Postgres container keeps only
    the monitor role's SCRAM verifier, and Redis's REDISCLI_AUTH is the PING-only healthcheck user).
    `docker cp` needs no tool in the image; `docker inspect` shows a container's environment."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _env(self, service: str) -> list[str]:
        name = running_container(self.engine, service)
        try:
            text = self.engine.docker("inspect", "--format", "{{json .Config.Env}}", name)
        except CommandError as error:
            raise CommandError(service, "docker inspect", f"no container {name} to read the credential from") from error
        entries: list[str] = json.loads(text) or []
        return entries

    def monitor_password(self) -> str:
        name = container_name(self.engine.stack, MONITOR_PASSWORD_SERVICE)
        try:
            archive = self.engine.docker_bytes("cp", f"{name}:{MONITOR_PASSWORD_FILE}", "-")
        except CommandError as error:
            raise CommandError(
                "postgres",
                "credentials",
                f"the {ROLES['monitor']} password is read from {name} (monitoring.enabled), which did not give it",
            ) from error
        return single_file_of_tar(archive)

    def redis_exporter_password(self) -> str:
        password = env_value(self._env(REDIS_EXPORTER_SERVICE), "REDIS_PASSWORD")
        if not password:
            raise CommandError("redis", "credentials", f"{REDIS_EXPORTER_SERVICE} has no REDIS_PASSWORD")
        return password

    def app_password(self) -> str:
        url = env_value(self._env(APP_CREDENTIAL_SERVICE), "DATABASE_URL")
        password = password_of_url(url or "")
        if not password:
            raise CommandError("postgres", "credentials", f"{APP_CREDENTIAL_SERVICE} has no DATABASE_URL password")
        return password


# ---------------------------------------------------------------------------------------------------
# psql as a given role, in the Postgres container


PSQL_BATCH = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA"]


def monitor_conninfo(settings: Settings, topo: Topology) -> list[str]:
    """The monitor role over the socket (pg_hba: `local <db> stories_monitor scram-sha-256`)."""
    return [
        "-h",
        topo.postgres_socket_dir,
        "-p",
        str(topo.postgres_port),
        "-U",
        ROLES["monitor"],
        "-d",
        settings.database.name,
    ]


def app_conninfo(settings: Settings, topo: Topology, hostaddr: str | None = None) -> list[str]:
    """The app role over TLS to the server's own address on the data network (pg_hba admits it there with
    SCRAM; over the socket only peer authentication is offered to other roles), the server verified.
    `hostaddr`: that address (postgres_data_address), when the name could resolve to another."""
    address = f" hostaddr={hostaddr}" if hostaddr else ""
    conninfo = (
        f"host={topo.postgres_host}{address} port={topo.postgres_port} dbname={settings.database.name} "
        f"user={settings.database.user} sslmode=verify-full sslrootcert={topo.postgres_tls_dir}/ca.crt"
    )
    return ["-d", conninfo]


def psql_env(password: str, application: str) -> dict[str, str]:
    return {"PGPASSWORD": password, "PGAPPNAME": application, "PGCONNECT_TIMEOUT": "10"}


def query_json(
    runner: Runner,
    conninfo: Sequence[str],
    password: str,
    sql: str,
    application: str,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> object:
    """One SQL statement returning one JSON value, run with psql in the Postgres container."""
    result = runner.run(
        "postgres", ["psql", *PSQL_BATCH, *conninfo, "-c", sql], env=psql_env(password, application), timeout=timeout
    )
    text = result.stdout.strip()
    if not text:
        raise CommandError("postgres", "psql", "no answer")
    return json.loads(text)


def fail(error: UsageError) -> int:
    print(error, file=sys.stderr)
    return 2
