"""Turn the raw stack config into `Settings`, or into one message that names every bad key, its value
and the rule it breaks. Nothing is registered with Pulumi before this has passed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from model.settings import Settings
from model.tuning import container_budget, postgres_tuning, required_max_connections

SETTINGS_KEY = "settings"
SECRETS_KEY = "secrets"

# Environment the platform sets itself; config may not override it.
MANAGED_ENV = frozenset(
    {"DATABASE_URL", "REDIS_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "NODE_ENV", "PORT", "HOSTNAME"}
)


@dataclass(frozen=True)
class Problem:
    path: str
    value: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.path} = {self.value!r}: {self.rule}"


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


def _value_at(raw: Any, location: Iterable[int | str]) -> Any:
    value = raw
    for part in location:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _model_problems(error: ValidationError, raw: Any) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not (isinstance(part, str) and "[" in part)]
        rule = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            rule = "unknown key (check the spelling; keys are camelCase)"
        problems.append(Problem(_path(SETTINGS_KEY, location), _value_at(raw, location), rule))
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
    problems += _env_problems(settings)
    for path, names in settings.secret_references().items():
        for name in names:
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
    reserved = sum(res.memory_reservation_mb * count for res, count in budget.values())
    if reserved > host.memory_mb:
        detail = ", ".join(f"{name} {res.memory_reservation_mb}x{count}" for name, (res, count) in budget.items())
        problems.append(
            Problem(
                "settings.host.memoryMb",
                host.memory_mb,
                f"the containers reserve {reserved} MB in all ({detail}), more than the host has",
            )
        )
    for name, (res, _count) in budget.items():
        if res.memory_mb > host.memory_mb or res.cpus > host.cpus:
            problems.append(
                Problem(
                    f"settings.host ({name})",
                    {"memoryMb": res.memory_mb, "cpus": res.cpus},
                    f"one container's limit exceeds the host ({host.memory_mb} MB, {host.cpus} cpus)",
                )
            )
    return problems


def _env_problems(settings: Settings) -> list[Problem]:
    problems = []
    for name in [*settings.app.env, *settings.app.secret_env]:
        if name in MANAGED_ENV:
            problems.append(
                Problem(f"settings.app.env.{name}", name, "is set by the platform and cannot be overridden")
            )
    for name in set(settings.app.env) & set(settings.app.secret_env):
        problems.append(Problem(f"settings.app.secretEnv.{name}", name, "is also in app.env; choose one"))
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
