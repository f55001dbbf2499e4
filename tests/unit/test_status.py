"""`make status`, `make db-top`, `make db-maintain`, `make psql`, `make logs`: parsing, judging and rendering
of the commands' real output (tests/unit/status_samples/README.md says where each sample comes from),
the command lines they run, and the clear refusal of bad arguments. Nothing here reaches a server."""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
import tarfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model.settings import Settings
from model.topology import ROLES, container_topology
from tools import db, ops, status
from tools.plan import settings_for

SAMPLES = Path(__file__).parent / "status_samples"
NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
FIXTURE_SECRETS = ("fixture-cipher-secret-1d8f", "fixture-redis-secret-77aa", "fixture-app-secret-9c2e")


SECRET_VALUE = secrets.token_urlsafe(12)  # generated: no literal secret in the tests


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.fixture(scope="module")
def settings() -> Settings:
    loaded: Settings = settings_for("prod")
    return loaded


def crit(findings: Sequence[status.Finding]) -> list[tuple[str, str]]:
    return [(f.section, f.subject) for f in findings if f.level == status.CRIT]


# --- containers ---------------------------------------------------------------------------------------


def containers() -> list[status.ContainerState]:
    return status.parse_containers(sample("docker-inspect.json"), sample("docker-stats.txt"), "e2e")


def test_containers_are_the_stacks_services_without_config_containers_and_stand_ins() -> None:
    rows = {row.name: row for row in containers()}
    assert "postgres-config" not in rows and "outside-s3" not in rows
    services = {"postgres", "pgbouncer", "redis", "app-1", "app-3", "nginx", "redis-exporter", "certbot"}
    assert set(rows) == services | {"app-migration", "app-volumes"}
    assert (rows["app-migration"].role, rows["app-migration"].exit_code) == ("one-shot", 0)
    postgres = rows["postgres"]
    assert (postgres.state, postgres.health, postgres.restarts) == ("running", "healthy", 1)
    assert postgres.memory_bytes == int(25.5 * 1024**2) and postgres.memory_limit_bytes == 1024**3
    assert postgres.started_at == datetime(2026, 11, 30, 23, 57, 30, 500000, tzinfo=UTC)
    assert rows["redis-exporter"].health is None  # no healthcheck (FROM scratch)
    assert rows["app-3"].replica == 3 and rows["app-3"].memory_bytes is None
    assert rows["nginx"].health_output == "wget: can't connect to remote host (127.0.0.1): Connection refused"
    assert rows["certbot"].exit_code == 1


def test_container_judgement(settings: Settings) -> None:
    findings = status.judge_containers(containers(), settings, NOW)
    assert sorted(crit(findings)) == [
        ("containers", "certbot"),  # exited with code 1
        ("containers", "nginx"),  # unhealthy
        ("containers", "postgres"),  # restarted 2.5 minutes ago
        ("containers", "redis"),  # 245 MiB of a 256 MiB limit
    ]
    messages = {f.subject: f.message for f in findings}
    assert "restarted 1x, the last 2m29s ago" in messages["postgres"]
    assert "96%" in messages["redis"]
    assert "app-3" not in messages  # a replica above app.replicas, stopped: the scaler's standby


def test_a_one_shot_is_judged_by_how_its_run_ended(settings: Settings) -> None:
    migration = next(row for row in containers() if row.name == "app-migration")
    assert status.judge_containers([migration], settings, NOW) == []
    migration.exit_code = 1
    findings = status.judge_containers([migration], settings, NOW)
    assert crit(findings) == [("containers", "app-migration")]
    assert "the one-shot run failed (exit code 1): make logs SERVICE=app-migration" in findings[0].message


def test_an_old_restart_is_a_warning_and_a_floor_replica_stopped_is_not(settings: Settings) -> None:
    later = NOW + timedelta(hours=1)
    findings = status.judge_containers(containers(), settings, later)
    assert ("containers", "postgres") not in crit(findings)
    assert [f.level for f in findings if f.subject == "postgres"] == [status.WARN]
    first = next(row for row in containers() if row.name == "app-1")
    first.state = "exited"
    assert crit(status.judge_containers([first], settings, NOW)) == [("containers", "app-1")]


def test_docker_sizes() -> None:
    assert status.parse_size("25.5MiB") == int(25.5 * 1024**2)
    assert status.parse_size("796 KiB") == 796 * 1024
    assert status.parse_size("1.045 GiB") == int(1.045 * 1024**3)
    assert status.parse_size("3.5MB") == 3_500_000 and status.parse_size("0B") == 0
    assert status.parse_stats("e2e-x\t-- / --\n") == {}
    with pytest.raises(ValueError):
        status.parse_size("lots")


# --- PgBouncer ------------------------------------------------------------------------------------------


def test_pools_from_pgbouncer_1_18() -> None:
    pools = status.parse_pools(sample("pgbouncer-show-pools.csv"))
    assert [(p.database, p.user) for p in pools] == [("stories_db", "pgbouncer_auth"), ("stories_db", "stories_user")]
    app = pools[1]
    assert (app.clients_active, app.clients_waiting, app.servers_active, app.servers_idle) == (1, 0, 0, 1)
    assert app.max_wait_seconds == 0
    assert status.judge_pools(pools) == []


def test_a_waiting_client_needs_a_person() -> None:
    text = sample("pgbouncer-show-pools.csv").replace(
        "stories_db,stories_user,1,0,0,0,0,0,0,1,0,0,0,0,0,transaction",
        "stories_db,stories_user,20,3,0,0,20,0,0,0,0,0,0,2,500000,transaction",
    )
    pools = status.parse_pools(text)
    assert pools[1].max_wait_seconds == 2.5
    findings = status.judge_pools(pools)
    assert crit(findings) == [("pgbouncer", "stories_db/stories_user")]
    assert "3 client(s) waiting" in findings[0].message


# --- Postgres --------------------------------------------------------------------------------------------


def test_postgres_healthy(settings: Settings) -> None:
    state = status.parse_postgres(json.loads(sample("postgres-healthy.json")))
    assert state.max_connections == 40 and state.connections == {"idle in transaction": 1}
    assert state.archived_count == 4 and not state.archive_failing and state.archive_timeout_seconds == 60
    assert state.longest_transaction is not None and state.longest_transaction["user"] == "stories_user"
    assert status.judge_postgres(state, settings) == []


def test_postgres_archiving_failing(settings: Settings) -> None:
    state = status.parse_postgres(json.loads(sample("postgres-archiving-failing.json")))
    assert state.archive_failing and state.failed_count == 2 and state.last_archived_age_seconds is None
    findings = status.judge_postgres(state, settings)
    assert crit(findings) == [("postgres", "wal archiving")]
    assert "failing" in findings[0].message


def test_postgres_stale_archive_and_connections(settings: Settings) -> None:
    document = json.loads(sample("postgres-healthy.json"))
    limit = 60 * settings.backup.late_factor
    document["archiver"]["last_archived_age_seconds"] = limit - 1
    assert status.judge_postgres(status.parse_postgres(document), settings) == []
    document["archiver"]["last_archived_age_seconds"] = limit + 1
    document["connections"] = {"active": 20, "idle": 13}  # 33 of 40: over 80%
    document["longest_transaction"]["seconds"] = 301
    findings = status.judge_postgres(status.parse_postgres(document), settings)
    assert sorted(crit(findings)) == [("postgres", "connections"), ("postgres", "wal archiving")]
    assert [f.subject for f in findings if f.level == status.WARN] == ["transaction"]


# --- Redis -----------------------------------------------------------------------------------------------


def test_redis_info() -> None:
    state = status.parse_redis_info(sample("redis-info.txt"))
    assert (state.version, state.maxmemory, state.policy) == ("7.0.15", 256 * 1024**2, "allkeys-lru")
    assert state.used_memory == 943504 and state.evicted_keys == 0 and state.hit_rate is None
    assert status.judge_redis(state) == []
    crlf = sample("redis-info.txt").replace("\n", "\r\n")
    assert status.parse_redis_info(crlf) == state


@pytest.mark.parametrize("name", ["redis-wrongpass.txt", "redis-noperm.txt"])
def test_redis_error_replies_are_errors_although_redis_cli_exits_0(name: str) -> None:
    with pytest.raises(ValueError, match=r"Redis answered: (NOAUTH|NOPERM)"):
        status.parse_redis_info(sample(name))


def test_redis_judgement() -> None:
    state = status.parse_redis_info(sample("redis-info.txt"))
    state.used_memory = int(0.95 * state.maxmemory)
    state.hits, state.misses = 90, 10
    assert state.hit_rate == 0.9
    assert [f.level for f in status.judge_redis(state)] == [status.WARN]  # allkeys-lru evicts
    state.policy = "noeviction"
    state.last_bgsave_status = "err"
    assert crit(status.judge_redis(state)) == [("redis", "memory"), ("redis", "persistence")]


# --- backups and alerts ------------------------------------------------------------------------------------


def test_backups_fresh_and_chained(settings: Settings) -> None:
    state = status.parse_backup_status(sample("backup-status.json"), settings)
    kinds = {kind.kind: kind for kind in state.kinds}
    assert list(kinds) == ["postgres full", "postgres diff", "postgres incr", "files", "redis"]
    full = status.parse_time(json.loads(sample("backup-status.json"))["last_success"]["full"])
    # a full backup is also the newest differential and incremental
    assert kinds["postgres full"].last_success == kinds["postgres incr"].last_success == full
    assert kinds["postgres incr"].late_after == timedelta(hours=1) * settings.backup.late_factor
    assert status.judge_backups(state) == []
    state.now += timedelta(minutes=settings.backup.files.interval_minutes * settings.backup.late_factor + 1)
    assert crit(status.judge_backups(state)) == [("backups", "files"), ("backups", "redis")]


def test_no_backup_at_all_needs_a_person(settings: Settings) -> None:
    state = status.parse_backup_status(sample("backup-status-empty.json"), settings)
    assert len(crit(status.judge_backups(state))) == 5


def test_alerts() -> None:
    alerts = status.parse_alerts(sample("alertmanager-alerts.json"))
    assert [(a.name, a.severity) for a in alerts] == [("BackupLate", "critical"), ("RedisMemoryHigh", "warning")]
    assert alerts[0].summary == "files backup is late"
    assert alerts[0].labels == {"job": "backup", "instance": "backup:9108", "kind": "files"}
    assert crit(status.judge_alerts(alerts)) == [("alerts", "BackupLate"), ("alerts", "RedisMemoryHigh")]
    assert status.parse_alerts(sample("alertmanager-none.json")) == []


# --- the whole report -----------------------------------------------------------------------------------


class SampleRunner:
    """Answers each service's command with its sample; records what it was asked."""

    def __init__(self, answers: Mapping[str, str], failing: Mapping[str, str] | None = None) -> None:
        self.answers = answers
        self.failing = failing or {}
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def run(
        self,
        service: str,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 120,
    ) -> ops.RunResult:
        self.calls.append((service, list(argv), dict(env or {})))
        if service in self.failing:
            raise ops.CommandError(service, argv[0], self.failing[service])
        return ops.RunResult(self.answers[service], "")


class SampleEngine:
    stack = "e2e"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def docker(self, *args: str, timeout: float | None = 120) -> str:
        self.calls.append(args)
        if args[0] == "ps":
            return "\n".join(item["Name"].lstrip("/") for item in json.loads(sample("docker-inspect.json"))) + "\n"
        if args[0] == "inspect":
            return sample("docker-inspect.json")
        if args[0] == "stats":
            return sample("docker-stats.txt")
        raise AssertionError(args)

    def docker_bytes(self, *args: str, timeout: float | None = 120) -> bytes:
        raise AssertionError(args)


ANSWERS = {
    "pgbouncer": "pgbouncer-show-pools.csv",
    "postgres": "postgres-healthy.json",
    "redis": "redis-info.txt",
    "backup": "backup-status.json",
    "alertmanager": "alertmanager-alerts.json",
}
CREDENTIALS = ops.StaticCredentials(monitor="monitor-pw-for-test", redis_exporter="exporter-pw-for-test", app="app")


def report(settings: Settings, failing: Mapping[str, str] | None = None) -> tuple[status.Report, SampleRunner]:
    runner = SampleRunner({service: sample(name) for service, name in ANSWERS.items()}, failing)
    gathered = status.gather(settings, "e2e", SampleEngine(), runner, CREDENTIALS)
    gathered.at = NOW
    return gathered, runner


def test_gather_runs_each_command_in_its_service_as_its_least_privileged_role(settings: Settings) -> None:
    gathered, runner = report(settings)
    assert gathered.errors == {}
    calls = {service: (argv, env) for service, argv, env in runner.calls}
    argv, env = calls["postgres"]
    assert argv[argv.index("-U") + 1] == ROLES["monitor"] and argv[argv.index("-h") + 1] == "/var/run/postgresql"
    assert env["PGPASSWORD"] == "monitor-pw-for-test"
    argv, env = calls["pgbouncer"]
    assert argv[argv.index("-U") + 1] == ROLES["pgbouncer_stats"] and "PGPASSWORD" not in env  # $PGPASSFILE
    argv, env = calls["redis"]
    assert argv[argv.index("--user") + 1] == "exporter" and env == {"REDISCLI_AUTH": "exporter-pw-for-test"}
    assert calls["backup"][0] == ["stories-backup", "status"]
    assert calls["alertmanager"][0][-1].startswith("http://127.0.0.1:9093/api/v2/alerts?active=true")
    for service, argv, _ in runner.calls:
        assert not any("pw-for-test" in part for part in argv), service  # secrets by environment only


def test_table_and_json_show_every_section_and_no_secret(settings: Settings) -> None:
    gathered, _ = report(settings)
    text, attention = status.render(gathered, settings, "table", colour=False)
    assert attention
    assert "\x1b[" not in text
    for heading in (
        "Containers",
        "PgBouncer pools",
        "Postgres",
        "Redis",
        "Backups",
        "Alerts firing",
        "Needs attention",
    ):
        assert heading in text
    assert "stories_db/stories_user" in text and "app-3" in text and "exited (standby)" in text
    assert "BackupLate (critical)" in text and "6 thing(s) need a person" in text
    document_text, _ = status.render(gathered, settings, "json", colour=False)
    document = json.loads(document_text)
    assert document["needs_a_person"] is True
    assert {row["name"] for row in document["containers"]} >= {"postgres", "pgbouncer", "redis"}
    assert document["pgbouncer"]["pools"][1]["user"] == "stories_user"
    assert document["postgres"]["total_connections"] == 1
    assert document["redis"]["maxmemory"] == 256 * 1024**2
    assert [kind["late"] for kind in document["backups"]["kinds"]] == [False] * 5
    judged = crit(status.judge(gathered, settings))
    assert [(f["section"], f["subject"]) for f in document["findings"] if f["level"] == "crit"] == judged
    for output in (text, document_text):
        for secret in (*FIXTURE_SECRETS, "monitor-pw-for-test", "exporter-pw-for-test"):
            assert secret not in output


def test_colour_only_on_a_terminal(settings: Settings) -> None:
    gathered, _ = report(settings)
    text, _ = status.render(gathered, settings, "table", colour=True)
    assert "\x1b[31m" in text and "\x1b[32m" in text
    assert not status.use_colour(io.StringIO())


def test_a_section_that_cannot_be_read_needs_a_person(settings: Settings) -> None:
    gathered, _ = report(settings, failing={"redis": "Error: Connection refused"})
    assert gathered.redis is None and gathered.errors == {"redis": "redis: redis-cli failed: Error: Connection refused"}
    text, attention = status.render(gathered, settings, "table", colour=False)
    assert attention and "could not be read: redis: redis-cli failed: Error: Connection refused" in text


def test_everything_fine_exits_zero(settings: Settings) -> None:
    gathered, _ = report(settings)
    gathered.containers = [row for row in containers() if row.name in ("pgbouncer", "app-1", "app-3")]
    gathered.alerts = []
    _, attention = status.render(gathered, settings, "table", colour=False)
    assert not attention


def test_durations_and_sizes() -> None:
    assert [status.duration(s) for s in (1.25, 42, 75, 3600 * 5 + 60, 3600 * 50)] == [
        "1.2s",
        "42s",
        "1m15s",
        "5h01m",
        "2d02h",
    ]
    assert [status.size(v) for v in (512, 1536, 256 * 1024**2, None)] == ["512B", "1.5KiB", "256MiB", "-"]


# --- db-top ------------------------------------------------------------------------------------------------


def test_top_statements() -> None:
    top = db.parse_top(json.loads(sample("pg-stat-statements.json")))
    assert top.database == "stories_db" and top.statements == 11 and top.since is not None
    assert top.slowest[0].mean_ms >= top.slowest[-1].mean_ms
    assert top.slowest[1].query == "INSERT INTO books (title) SELECT $1 || g FROM generate_series($2, $3) g"
    text = db.render_top(top)
    assert "Slowest (by mean time)" in text and "Most frequent (by calls)" in text
    assert "mean ms  total ms  calls  rows  role" in text


def test_string_literals_never_reach_the_screen() -> None:
    assert db.redact_literals(f"CREATE ROLE x LOGIN PASSWORD '{SECRET_VALUE}''s'") == "CREATE ROLE x LOGIN PASSWORD '?'"
    assert db.redact_literals("ALTER ROLE x PASSWORD E'se\\'cret'") == "ALTER ROLE x PASSWORD '?'"
    assert db.redact_literals("SELECT U&'d\\0061t' || B'101' || 'it''s'") == "SELECT '?' || '?' || '?'"
    assert db.redact_literals("DO $body$ BEGIN PERFORM 'x'; END $body$") == "DO '?'"
    assert db.redact_literals("SELECT $1,\n   $2 FROM t WHERE a = $3") == "SELECT $1, $2 FROM t WHERE a = $3"


def test_top_sql_leaves_the_monitor_roles_own_statements_out() -> None:
    sql = db.top_sql(7)
    assert f"IS DISTINCT FROM '{ROLES['monitor']}'" in sql and sql.count("LIMIT 7") == 2


# --- db-maintain ---------------------------------------------------------------------------------------------


def snapshot(name: str) -> db.Snapshot:
    return db.parse_snapshot(json.loads(sample(name)))


def test_maintenance_plan_and_script() -> None:
    before = snapshot("tables-before.json")
    plan = db.plan_maintenance(before.tables)
    assert plan == {"public.books": db.VACUUM, "public.readers": db.ANALYZE}  # 3000 dead of 5000; never analyzed
    script = db.maintenance_script(plan, before.tables)
    assert 'VACUUM (ANALYZE, SKIP_LOCKED) "public"."books";' in script
    assert 'ANALYZE (SKIP_LOCKED) "public"."readers";' in script
    assert "SET statement_timeout = 0;" in script and "SET lock_timeout" in script
    for forbidden in ("FULL", "REINDEX", "CLUSTER", "LOCK", "DROP"):
        assert forbidden not in script.replace("SKIP_LOCKED", "").replace("lock_timeout", "")
    after = snapshot("tables-after.json")
    assert db.plan_maintenance(after.tables) == {"public.books": db.NOTHING, "public.readers": db.NOTHING}


def test_maintenance_outcome_is_read_from_the_servers_statistics() -> None:
    before, after = snapshot("tables-before.json"), snapshot("tables-after.json")
    result = db.outcome(before, after, db.plan_maintenance(before.tables), "")
    rows = {row.table: row for row in result.tables}
    assert (rows["public.books"].result, rows["public.books"].dead_before, rows["public.books"].dead_after) == (
        "done",
        3000,
        0,
    )
    assert rows["public.readers"].result == "done" and not result.failed
    assert [b.name for b in result.bloat] == ["books"] and not result.bloat[0].reported  # 60%, but 136 KiB
    assert [u.index for u in result.unused_indexes] == ["books_author"]
    text = db.render_maintenance(result)
    assert "VACUUM (ANALYZE)  done" in text and "public.books_author on books" in text


def test_maintenance_messages() -> None:
    skipped, failed = db.parse_messages(sample("maintain-locked.stderr"))
    assert skipped == {"books"} and failed == {}
    skipped, failed = db.parse_messages(sample("maintain-not-owner.stderr"))
    assert skipped == set()
    assert failed == {
        "books": "only table or database owner can analyze it",
        "public.nosuch": 'relation "public.nosuch" does not exist',
        "readers": "only table or database owner can analyze it",
    }
    before, after = snapshot("tables-before.json"), snapshot("tables-before.json")
    result = db.outcome(before, after, db.plan_maintenance(before.tables), sample("maintain-locked.stderr"))
    assert result.tables[0].result.startswith("skipped") and result.tables[1].result.startswith("not done")
    assert result.failed


# --- command lines and credentials ------------------------------------------------------------------------------


def fake_docker(tmp_path: Path) -> str:
    """A stand-in for the docker CLI that prints its arguments and the password it was handed by environment."""
    script = tmp_path / "docker"
    script.write_text('#!/bin/sh\necho "ARGS $*"\necho "ENV ${PGPASSWORD:-none}"\ncat\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_docker_exec_hands_secrets_over_by_name_only(tmp_path: Path) -> None:
    cli = ops.DockerCli("ssh://ops@db.example.org", "prod", docker=fake_docker(tmp_path))
    result = cli.run("postgres", ["psql", "-c", "SELECT 1"], stdin="input\n", env={"PGPASSWORD": SECRET_VALUE})
    lines = result.stdout.splitlines()
    assert lines[0] == "ARGS -H ssh://ops@db.example.org exec -i -e PGPASSWORD prod-postgres psql -c SELECT 1"
    assert lines[1:] == [f"ENV {SECRET_VALUE}", "input"]
    assert SECRET_VALUE not in " ".join(cli.exec_argv("postgres", ["psql"], ["PGPASSWORD"], True, True))


def test_a_failing_command_names_service_and_program_not_the_secret(tmp_path: Path) -> None:
    script = tmp_path / "docker"
    script.write_text('#!/bin/sh\necho "Error: No such container: prod-redis" >&2\nexit 1\n')
    script.chmod(0o755)
    cli = ops.DockerCli("unix:///var/run/docker.sock", "prod", docker=str(script))
    with pytest.raises(ops.CommandError, match=r"^redis: redis-cli failed: Error: No such container: prod-redis$"):
        cli.run("redis", ["redis-cli", "INFO"], env={"REDISCLI_AUTH": SECRET_VALUE})


class CredentialEngine:
    stack = "prod"

    def docker(self, *args: str, timeout: float | None = 120) -> str:
        if args[0] == "ps":  # the running replica 1 by its labels: its name carries its generation
            assert "label=org.1001stories.replica=1" in args and "label=org.1001stories.service=app" in args
            return "prod-app-1-0a1b2c3d\n"
        assert args[:3] == ("inspect", "--format", "{{json .Config.Env}}")
        if args[3] == "prod-redis-exporter":
            return json.dumps(["REDIS_ADDR=redis://redis:6379", "REDIS_USER=exporter", "REDIS_PASSWORD=exp/pw+1"])
        assert args[3] == "prod-app-1-0a1b2c3d", args
        return json.dumps(["DATABASE_URL=postgresql://stories_user:a%2Fb%40c@pgbouncer:6432/stories_db?pgbouncer=true"])

    def docker_bytes(self, *args: str, timeout: float | None = 120) -> bytes:
        assert args == ("cp", f"prod-postgres-exporter:{ops.MONITOR_PASSWORD_FILE}", "-")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            data = b"monitor-password\n"
            info = tarfile.TarInfo("password")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def test_credentials_come_from_the_containers_that_hold_them() -> None:
    credentials = ops.DockerCredentials(CredentialEngine())
    assert credentials.monitor_password() == "monitor-password"
    assert credentials.redis_exporter_password() == "exp/pw+1"
    assert credentials.app_password() == "a/b@c"


def test_psql_as_monitor_or_app(settings: Settings) -> None:
    topo = container_topology(settings)
    argv, env = db.psql_invocation(settings, topo, "monitor", CREDENTIALS)
    assert argv == [
        "psql",
        "-h",
        "/var/run/postgresql",
        "-p",
        "5432",
        "-U",
        ROLES["monitor"],
        "-d",
        settings.database.name,
    ]
    assert env["PGPASSWORD"] == "monitor-pw-for-test"
    argv, env = db.psql_invocation(settings, topo, "app", CREDENTIALS, command="SELECT 1")
    conninfo = argv[argv.index("-d") + 1]
    assert "host=postgres " in conninfo and f"user={settings.database.user} " in conninfo
    assert "sslmode=verify-full" in conninfo and argv[-2:] == ["-c", "SELECT 1"] and env["PGPASSWORD"] == "app"
    # In the container the name can resolve to its egress address: the data network's is given as well,
    # and the certificate is still checked against the name.
    argv, _ = db.psql_invocation(settings, topo, "app", CREDENTIALS, hostaddr="172.30.2.5")
    assert "host=postgres hostaddr=172.30.2.5 " in argv[argv.index("-d") + 1]


def test_logs_command(tmp_path: Path) -> None:
    cli = ops.DockerCli("unix:///var/run/docker.sock", "prod", docker="docker")
    assert db.logs_argv(cli, "pgbouncer", 50, follow=True) == [
        "docker",
        "-H",
        "unix:///var/run/docker.sock",
        "logs",
        "--timestamps",
        "--tail",
        "50",
        "--follow",
        "prod-pgbouncer",
    ]


# --- bad arguments ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "prod", "--format", "xml"], "FORMAT = 'xml': must be table or json"),
        (["--stack", "nope"], "STACK = 'nope': no Pulumi.nope.yaml; known stacks: "),
    ],
)
def test_status_refuses_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "--stack", "prod", "--limit", "0"], "N = '0': must be a whole number from 1 to 1000"),
        (["top", "--stack", "prod", "--limit", "many"], "N = 'many': must be a whole number from 1 to 1000"),
        (["top", "--stack", "prod", "--format", "yaml"], "FORMAT = 'yaml': must be table or json"),
        (["maintain", "--stack", "nope"], "STACK = 'nope': no Pulumi.nope.yaml"),
        (["psql", "--stack", "prod", "--role", "postgres"], "ROLE = 'postgres': must be monitor or app"),
        (["logs", "--stack", "prod", "--service", "x", "--tail", "-1"], "N = '-1': must be a whole number"),
    ],
)
def test_db_refuses_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert db.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_makefile_targets_pass_the_arguments() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for target, module in (
        ("status", "tools.status"),
        ("db-top", "tools.db top"),
        ("db-maintain", "tools.db maintain"),
        ("psql", "tools.db psql"),
        ("logs", "tools.db logs"),
    ):
        assert f"\n{target}: $(VENV)/.installed\n" in makefile, target
        assert f'-m {module} --stack "$(STACK)"' in makefile, target


FAKE_DOCKER = '''#!{python}
"""A stand-in for the docker CLI: answers what `make status` asks with the samples, logs every call."""
import io, json, os, sys, tarfile
samples, log = {samples!r}, {log!r}
args = sys.argv[1:]
assert args[0] == "-H", args
args = args[2:]
with open(log, "a") as calls:
    handed = sorted(name for name in os.environ if name in ("PGPASSWORD", "REDISCLI_AUTH"))
    calls.write(json.dumps({{"args": args, "env": handed}}) + "\\n")
def sample(name):
    return open(os.path.join(samples, name)).read().replace("e2e-", "prod-").replace('"e2e"', '"prod"')
if args[0] == "ps":
    print("\\n".join(item["Name"].lstrip("/") for item in json.loads(sample("docker-inspect.json"))))
elif args[0] == "inspect" and args[1] == "--format":
    print(json.dumps(["REDIS_USER=exporter", "REDIS_PASSWORD=" + os.environ["FAKE_EXPORTER_PASSWORD"]]))
elif args[0] == "inspect":
    print(sample("docker-inspect.json"))
elif args[0] == "stats":
    print(sample("docker-stats.txt"), end="")
elif args[0] == "cp":
    data = (os.environ["FAKE_MONITOR_PASSWORD"] + "\\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("password"); info.size = len(data); archive.addfile(info, io.BytesIO(data))
    sys.stdout.buffer.write(buffer.getvalue())
elif args[0] == "exec":
    container = next(a for a in args[1:] if a.startswith("prod-"))
    answers = {{"prod-pgbouncer": "pgbouncer-show-pools.csv", "prod-postgres": "postgres-healthy.json",
               "prod-redis": "redis-info.txt", "prod-backup": "backup-status.json",
               "prod-alertmanager": "alertmanager-none.json"}}
    expected = {{"prod-postgres": "FAKE_MONITOR_PASSWORD", "prod-redis": "FAKE_EXPORTER_PASSWORD"}}
    if container in expected:
        name = "PGPASSWORD" if container == "prod-postgres" else "REDISCLI_AUTH"
        assert os.environ[name] == os.environ[expected[container]], container
    print(open(os.path.join(samples, answers[container])).read(), end="")
else:
    sys.exit("unexpected: " + " ".join(args))
'''


def test_make_status_end_to_end_through_a_docker_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    log = tmp_path / "calls.jsonl"
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, samples=str(SAMPLES), log=str(log)))
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MONITOR_PASSWORD", "fake-monitor-password-4e1")
    monkeypatch.setenv("FAKE_EXPORTER_PASSWORD", "fake-exporter-password-9b0")
    assert status.main(["--stack", "prod", "--format", "json"]) == 1  # the samples hold an unhealthy nginx
    out = capsys.readouterr().out
    document = json.loads(out)
    assert document["errors"] == {} and document["alerts"] == []
    assert {row["name"] for row in document["containers"]} >= {"postgres", "pgbouncer", "redis", "app-1"}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    execs = {
        next(a for a in call["args"] if a.startswith("prod-")): call for call in calls if call["args"][0] == "exec"
    }
    assert set(execs) == {"prod-pgbouncer", "prod-postgres", "prod-redis", "prod-backup", "prod-alertmanager"}
    assert execs["prod-postgres"]["args"][:7] == [
        "exec",
        "-e",
        "PGAPPNAME",
        "-e",
        "PGCONNECT_TIMEOUT",
        "-e",
        "PGPASSWORD",
    ]
    assert execs["prod-postgres"]["env"] == ["PGPASSWORD"] and execs["prod-redis"]["env"] == ["REDISCLI_AUTH"]
    for call in calls:
        assert not any("fake-" in argument and "password" in argument for argument in call["args"]), call
    assert "fake-monitor-password-4e1" not in out and "fake-exporter-password-9b0" not in out


def test_logs_knows_services_and_one_shots_but_not_config_containers(tmp_path: Path) -> None:
    script = tmp_path / "docker"
    listing = "prod-postgres\t\nprod-postgres-config\tconfig\nprod-app-migration\tone-shot\nprod-app-1\t\n"
    script.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    script.chmod(0o755)
    cli = ops.DockerCli("unix:///var/run/docker.sock", "prod", docker=str(script))
    assert db.service_names(cli) == ["app-1", "app-migration", "postgres"]
