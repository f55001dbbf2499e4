"""Turn the raw stack config into `Settings`, or into one message that names every bad key, its value
and the rule it breaks. Nothing is registered with Pulumi before this has passed."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from model.settings import InvalidKeyError, Settings, blamed
from model.topology import ROLES
from model.tuning import container_budget, postgres_tuning, required_max_connections

SETTINGS_KEY = "settings"
SECRETS_KEY = "secrets"

# The longest value a message shows; a longer one, or one of several lines, is cut with an ellipsis.
MAX_VALUE_CHARS = 100

# Environment the platform sets itself; config may not override it.
MANAGED_ENV = frozenset(
    {"DATABASE_URL", "REDIS_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "CRON_SECRET", "NODE_ENV", "PORT", "HOSTNAME"}
)


@dataclass(frozen=True)
class Problem:
    path: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.path} = {_one_line(self.value)}: {self.rule}"


def _one_line(value: Any) -> str:
    """`value` as one short line. repr writes a line break inside a string as \\n: the shown part ends there."""
    text = repr(value)
    first = text.split("\\n", 1)[0]
    if first == text and len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{first[: MAX_VALUE_CHARS - 1]}…"


class ConfigError(Exception):
    """Bad stack configuration. Its message lists every problem, one a line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


def _path(prefix: str, location: Iterable[int | str]) -> str:
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _value_at(raw: Any, location: Iterable[int | str], absent: Any = None) -> Any:
    """The value the user wrote at `location`, or `absent` where they wrote none."""
    value = raw
    for part in location:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return absent
    return value


def _model_problems(error: ValidationError, raw: Any) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not (isinstance(part, str) and "[" in part)]
        rule = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            rule = "unknown key (check the spelling; keys are camelCase)"
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, InvalidKeyError):  # a model's rule about one of its keys: name that key
            location += cause.location
            value = _value_at(raw, location, to_jsonable_python(cause.value, by_alias=True))
        else:
            value = _value_at(raw, location)
        problems.append(Problem(_path(SETTINGS_KEY, location), value, rule))
    return problems


def _consistency_problems(settings: Settings, secret_names: set[str]) -> list[Problem]:
    """Rules that span more than one part of the settings."""
    problems = []
    explicit_max = settings.database.max_connections
    needed = required_max_connections(settings)
    if explicit_max is not None and explicit_max < needed:
        problems.append(
            Problem(
                "settings.database.maxConnections",
                explicit_max,
                f"must be at least {needed}: pgbouncer defaultPoolSize + reservePoolSize "
                f"({settings.pgbouncer.server_connections}) plus reserved and direct connections",
            )
        )
    tuning = postgres_tuning(settings)
    per_query_mb = tuning.shared_buffers_mb + tuning.max_connections * tuning.work_mem_mb
    if per_query_mb > settings.database.resources.memory_mb:
        problems.append(
            Problem(
                "settings.database.workMemMb",
                settings.database.work_mem_mb,
                f"shared_buffers ({tuning.shared_buffers_mb} MB) + maxConnections ({tuning.max_connections}) x "
                f"workMemMb exceeds the container's {settings.database.resources.memory_mb} MB",
            )
        )
    redis = settings.redis
    if redis.resources.memory_mb < redis.required_limit_mb:
        reason = "a persistence fork may copy every page" if redis.forks_for_persistence else "allocator overhead"
        problems.append(
            Problem(
                "settings.redis.resources.memoryMb",
                redis.resources.memory_mb,
                f"must be at least {redis.required_limit_mb} for maxmemoryMb {redis.maxmemory_mb} ({reason})",
            )
        )
    problems += _host_problems(settings)
    problems += _port_problems(settings)
    problems += _role_problems(settings)
    problems += _env_problems(settings)
    for path, name in settings.secret_references().items():
        if name not in secret_names:
            problems.append(
                Problem(
                    f"settings.{path}",
                    name,
                    f"no such secret; set it with `pulumi config set --secret --path '{SECRETS_KEY}.{name}' ...`",
                )
            )
    return problems


def _host_problems(settings: Settings) -> list[Problem]:
    host = settings.host
    budget = container_budget(settings)
    problems = []
    reserved = sum(each.resources.memory_reservation_mb * each.count for each in budget.values())
    if reserved > host.memory_mb:
        detail = ", ".join(
            f"{name} {each.resources.memory_reservation_mb}x{each.count}" for name, each in budget.items()
        )
        problems.append(
            Problem(
                "settings.host.memoryMb",
                host.memory_mb,
                f"the containers reserve {reserved} MB in all ({detail}), more than the host has",
            )
        )
    limits = {each.key: each.resources for each in budget.values()}  # a key shared by containers once
    for key, res in limits.items():
        for field, limit, host_limit in (("memoryMb", res.memory_mb, host.memory_mb), ("cpus", res.cpus, host.cpus)):
            if limit > host_limit:
                problems.append(
                    Problem(
                        f"settings.{key}.{field}", limit, f"a container's limit exceeds host.{field} ({host_limit})"
                    )
                )
    return problems


def _published_ports(settings: Settings) -> dict[str, tuple[BaseModel, str]]:
    """Key path -> (model, field) of every port the stack publishes on the host, nginx's first."""
    proxy, monitoring = settings.proxy, settings.monitoring
    ports: dict[str, tuple[BaseModel, str]] = {
        "settings.proxy.httpHostPort": (proxy, "http_host_port"),
        "settings.proxy.httpsHostPort": (proxy, "https_host_port"),
    }
    if monitoring.enabled:
        ports["settings.monitoring.prometheusHostPort"] = (monitoring, "prometheus_host_port")
        ports["settings.monitoring.alertmanagerHostPort"] = (monitoring, "alertmanager_host_port")
    if monitoring.enabled and monitoring.grafana.enabled:
        ports["settings.monitoring.grafana.hostPort"] = (monitoring.grafana, "host_port")
    return ports


def _port_problems(settings: Settings) -> list[Problem]:
    """Two containers cannot publish the same host port (the deploy fails to bind the second). The
    admin UIs' ports are 1024 and above, so 80 and 443 stay nginx's."""
    ports = _published_ports(settings)
    value = {path: getattr(model, field) for path, (model, field) in ports.items()}
    written = {path for path, (model, field) in ports.items() if field in model.model_fields_set}
    problems = []
    for earlier, later in itertools.combinations(ports, 2):
        if value[earlier] == value[later]:
            path, other = blamed(earlier, later, written)
            rule = f"{other.removeprefix('settings.')} publishes it too; every published host port must be unique"
            problems.append(Problem(path, value[path], rule))
    return problems


def _role_problems(settings: Settings) -> list[Problem]:
    """The app's role must not be one the platform creates (topology.ROLES), the superuser, or a name
    Postgres reserves (pg_*)."""
    user = settings.database.user
    if user == "postgres" or user in ROLES.values() or user.startswith("pg_"):
        roles = ", ".join(ROLES.values())
        rule = f"is taken: postgres (the superuser), the platform's roles ({roles}), pg_* (reserved by Postgres)"
        return [Problem("settings.database.user", user, rule)]
    return []


def _env_problems(settings: Settings) -> list[Problem]:
    app, managed = settings.app, "is set by the platform and cannot be overridden"
    # What the user meant for a managed name is likely a credential (DATABASE_URL, NEXTAUTH_SECRET): not shown.
    problems = [Problem(f"settings.app.env.{name}", "[not shown]", managed) for name in app.env if name in MANAGED_ENV]
    for index, name in enumerate(app.secret_env):
        if name in MANAGED_ENV or name in app.env:
            rule = managed if name in MANAGED_ENV else "is also in app.env; choose one"
            problems.append(Problem(f"settings.app.secretEnv[{index}]", name, rule))
    return problems


def load_settings(raw: Any, secret_names: Iterable[str] = ()) -> Settings:
    """Validate the raw `settings` object; raise ConfigError naming every problem."""
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem(SETTINGS_KEY, raw, "must be an object (see README: Stack configuration)")])
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_model_problems(error, raw)) from None
    problems = _consistency_problems(settings, set(secret_names))
    if problems:
        raise ConfigError(problems)
    return settings
