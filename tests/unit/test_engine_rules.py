"""The Docker engine's rules on every stack's plan (mocks enforce none of them), each rule failing on a
plan that breaks it, and the fixes they stand for: egress for WAL archiving and the app, the backup
volume's owner, certificates the backups can read, a certbot healthcheck that does not expire, the
Docker API version the scaler negotiates, cAdvisor that speaks to current engines, the Postgres
healthcheck pg_hba admits, and a build context without .venv and .git."""

from __future__ import annotations

import copy
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from docker.utils.build import exclude_paths

from components.proxy import certbot_healthcheck
from configs.render import render_certbot, render_postgres
from model.images import parse_image
from model.settings import Images
from model.topology import BACKUP_GID, NGINX_UID, container_topology
from policy.engine import (
    aliases_reach_the_engine,
    egress_where_needed,
    no_uploads_into_read_only,
    stopped_replicas_tolerated,
    volume_owners,
    volume_owners_of_stack,
)
from policy.props import CONTAINER, NETWORK, Resource
from tests.conftest import plan_of
from tests.unit.test_plan_stacks import config_containers, containers, label
from tests.unit.test_policy import resources_of
from tools.plan import STACKS, run_plan, settings_for, stack_config

ROOT = Path(__file__).resolve().parents[2]


def replace_container(resources: list[Resource], name: str, props: dict[str, Any]) -> list[Resource]:
    return [
        Resource(r.type, r.name, r.parent, props) if r.name == name and r.type == CONTAINER else r for r in resources
    ]


@pytest.mark.parametrize("stack", [*STACKS, "e2e"])
def test_every_stack_keeps_the_engine_rules(stack: str) -> None:
    plan = plan_of(stack)
    resources = resources_of(plan)
    for resource in resources:
        assert no_uploads_into_read_only(resource.type, resource.props, resource.name) == []
        assert aliases_reach_the_engine(resource.type, resource.props, resource.name) == []
    assert volume_owners_of_stack(resources) == []
    assert egress_where_needed(resources) == []
    assert stopped_replicas_tolerated(resources) == []


def test_uploads_into_a_read_only_container_are_refused() -> None:
    """Point 1: the provider extracts uploads at `/`, which Docker refuses in a read-only container."""
    postgres = copy.deepcopy(plan_of("prod").named(CONTAINER, "postgres").inputs)
    postgres["uploads"] = [{"file": "/etc/stories/postgres/postgresql.conf", "content": "x", "permissions": "0444"}]
    (problem,) = no_uploads_into_read_only(CONTAINER, postgres, "postgres")
    assert "read-only root" in problem and "config container" in problem
    for config in config_containers(plan_of("prod")).values():
        assert config["readOnly"] is False and config["start"] is False and config["mustRun"] is False
        assert config["networkMode"] == "none" and not config.get("networksAdvanced")


def test_services_needing_egress_have_a_route_out() -> None:
    """Points 2 and 11: archive-push and the backups reach S3, the app its outside APIs."""
    plan = plan_of("prod")
    networks = {r.inputs["name"]: r.inputs for r in plan.of_type(NETWORK)}
    for service in ("postgres", "backup", "app-1"):
        joined = [networks[n["name"]] for n in containers(plan)[service]["networksAdvanced"]]
        assert any(not network["internal"] for network in joined), service
    broken = resources_of(plan)
    postgres = copy.deepcopy(plan.named(CONTAINER, "postgres").inputs)
    postgres["networksAdvanced"] = [n for n in postgres["networksAdvanced"] if "egress" not in n["name"]]
    (problem,) = egress_where_needed(replace_container(broken, "postgres", postgres))
    assert problem.startswith("postgres: must reach the S3 backup repository")


def test_the_e2e_stack_keeps_its_egress_networks_internal() -> None:
    """On the isolated test host the egress networks have no route out; the stand-ins join them."""
    plan = plan_of("e2e")
    egress = [r.inputs for r in plan.of_type(NETWORK) if "-egress-" in r.inputs["name"]]
    assert egress and all(network["internal"] for network in egress)
    assert egress_where_needed(resources_of(plan)) == []


def test_writable_volumes_land_on_directories_the_service_owns() -> None:
    """Point 3: the backup volume was mounted where the image had no directory (root 0755)."""
    backup = copy.deepcopy(plan_of("prod").named(CONTAINER, "backup").inputs)
    backup["volumes"].append({"containerPath": "/var/lib/elsewhere", "volumeName": "prod-backup-work"})
    (problem,) = volume_owners(CONTAINER, backup, "backup")
    assert "/var/lib/elsewhere" in problem and "root-owned 0755" in problem
    dockerfile = (ROOT / "backup" / "Dockerfile").read_text()
    assert re.search(r"install -d -o postgres -g postgres -m 07\d0 /var/lib/stories-backup", dockerfile)


def test_app_volumes_where_the_image_has_no_directory_get_their_owner_first() -> None:
    """The app's image has no public/avatars and no private/exports: new volumes there would be root 0755.
    A one-shot gives every data volume to uid 1001 before a replica starts; without it, or without CHOWN,
    the rule names exactly those two volumes."""
    plan = plan_of("prod")
    resources = resources_of(plan)
    owner = plan.named(CONTAINER, "app-volumes").inputs
    assert owner["entrypoints"] == ["chown"] and owner["command"][0] == "1001:1001"
    assert owner["user"] == "0:0" and owner["capabilities"] == {"drops": ["ALL"], "adds": ["CHOWN"]}
    owned = {v["volumeName"]: v["containerPath"] for v in owner["volumes"]}
    assert sorted(owned.values()) == sorted(owner["command"][1:])  # every mounted volume is chowned
    assert set(owned) == {f"prod-app-{each.name}" for each in settings_for("prod").app.data_dirs}
    without = [r for r in resources if not (r.type == CONTAINER and r.name == "app-volumes")]
    problems = volume_owners_of_stack(without)
    assert {p.split(" ")[2] for p in problems} == {"prod-app-avatars", "prod-app-exports"}
    assert all(p.startswith("app-") and "root-owned 0755" in p for p in problems)
    no_chown = copy.deepcopy(owner)
    no_chown["capabilities"] = {"drops": ["ALL"]}
    assert volume_owners_of_stack(replace_container(resources, "app-volumes", no_chown)) == problems


def test_certbot_shares_its_tree_with_the_backup_group() -> None:
    """Point 4: restic runs as the backup group, which must read certbot's 0700 tree and 0400 keys."""
    settings = settings_for("prod")
    script = render_certbot(settings, container_topology(settings))["certbot.sh"]
    assert f"chgrp {BACKUP_GID}" in script and "chmod g+rX,o-rwx" in script
    assert f"chown {NGINX_UID}:{BACKUP_GID} " in script  # nginx's copy of the key, after its mode 0440
    backup = containers(plan_of("prod"))["backup"]
    assert backup["user"] == f"{BACKUP_GID}:{BACKUP_GID}"


def _certificate(directory: Path, lifetime_days: int, left_days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stories.example.org")])
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=left_days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(end - datetime.timedelta(days=lifetime_days))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    ("lifetime_days", "left_days", "healthy"),
    [(90, 89, True), (90, 31, True), (90, 16, True), (90, 14, False), (45, 10, True), (45, 6, False)],
)
def test_certbot_health_follows_the_served_certificate(
    tmp_path: Path, lifetime_days: int, left_days: int, healthy: bool
) -> None:
    """Point 5: healthy while the served certificate has a sixth of its lifetime left, whatever its age
    (the old check looked at certbot's archive, whose oldest file only ages)."""
    settings = settings_for("prod")
    topo = container_topology(settings)
    live = tmp_path / "live"
    command = certbot_healthcheck(topo)
    script = command[2].replace(f"{topo.letsencrypt_live_dir}/", f"{live}/")
    assert _run_python(script) != 0, "no certificate yet: unhealthy"
    _certificate(live, lifetime_days, left_days)
    assert (_run_python(script) == 0) is healthy


def _run_python(script: str) -> int:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, check=False).returncode


def test_certbot_tries_again_until_the_first_certificate() -> None:
    """Point 6: one `certonly --keep-until-expiring` issues or renews; a failure is retried soon, not
    after the renewal interval (the old loop ran only `renew`, which never issues a first certificate)."""
    settings = settings_for("prod")
    script = render_certbot(settings, container_topology(settings))["certbot.sh"]
    commands = [line.strip() for line in script.splitlines() if not line.strip().startswith("#")]
    assert not any(line.startswith("certbot renew") for line in commands) and "--keep-until-expiring" in script
    tls = settings.proxy.tls
    assert f"wait={tls.retry_seconds}" in script and f"wait={tls.renew_interval_hours * 3600}" in script


def test_nothing_names_a_replica_created_stopped() -> None:
    """Point 7: a stopped replica has no DNS name; static probe targets and nginx servers without
    `resolve` named it."""
    plan = plan_of("prod")
    resources = resources_of(plan)
    prometheus = copy.deepcopy(config_containers(plan)["prometheus"])
    for upload in prometheus["uploads"]:
        if upload["file"].endswith("prometheus.yml"):
            upload["content"] += "  - job_name: app\n    static_configs:\n    - targets: ['app-3:3000']\n"
    config_name = next(r.name for r in plan.of_type(CONTAINER) if r.inputs["name"] == prometheus["name"])
    (problem,) = stopped_replicas_tolerated(replace_container(resources, config_name, prometheus))
    assert "names app-3, which is created stopped" in problem
    nginx_line = "        server app-3:3000 max_fails=2 fail_timeout=10s resolve;"
    nginx = copy.deepcopy(config_containers(plan)["nginx"])
    for upload in nginx["uploads"]:
        if upload["file"].endswith("nginx.conf"):
            upload["content"] += nginx_line + "\n"
    config_name = next(r.name for r in plan.of_type(CONTAINER) if r.inputs["name"] == nginx["name"])
    assert stopped_replicas_tolerated(replace_container(resources, config_name, nginx)) == []


def test_cadvisor_speaks_to_current_engines() -> None:
    """Point 8: cAdvisor v0.49 asked for API 1.41, which Docker Engine 29.0-29.2 refuse (no per-container
    series at all); v0.57 negotiates the version."""
    assert parse_image(Images().cadvisor).version >= (0, 57)
    assert plan_of("e2e").outputs and "cadvisor" not in containers(plan_of("e2e"))  # no image on the e2e host
    assert "cadvisor" in containers(plan_of("prod"))


def test_postgres_healthcheck_uses_what_pg_hba_admits() -> None:
    """Point 10: the healthcheck connected over 127.0.0.1, which pg_hba does not admit: a FATAL line every
    10 s. Now: the socket, as the monitor role, which a `local` line admits before the peer rule."""
    settings = settings_for("prod")
    topo = container_topology(settings)
    postgres = containers(plan_of("prod"))["postgres"]
    test = postgres["healthcheck"]["tests"]
    assert test[test.index("-h") + 1] == topo.postgres_socket_dir and "127.0.0.1" not in test
    user = test[test.index("-U") + 1]
    hba = [line.split() for line in render_postgres(settings, topo, _versions())["pg_hba.conf"].splitlines()]
    rules = [line for line in hba if line and not line[0].startswith("#")]
    first_local = next(rule for rule in rules if rule[0] == "local" and rule[2] in (user, "all"))
    assert first_local[1:] == [settings.database.name, user, "scram-sha-256"]


def _versions() -> Any:
    from configs.render import image_versions

    return image_versions(settings_for("prod"))


def test_the_build_context_is_only_what_the_dockerfiles_copy() -> None:
    """Point 12: without .dockerignore every build sent .venv and .git along."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in ("backup/Dockerfile", "scaler/Dockerfile", "cron/Dockerfile"):
        context = exclude_paths(str(ROOT), patterns, dockerfile=dockerfile)
        assert not any(path.startswith((".venv", ".git/", "tests/", "e2e/")) for path in context)
        for line in (ROOT / dockerfile).read_text().splitlines():
            if line.startswith("COPY "):
                sources = line.split()[1:-1]
                assert all(source in context for source in sources), (dockerfile, sources)


def test_config_containers_replace_their_service_when_files_change() -> None:
    """A service carries its config container's id as a label: new files, new config container, new id,
    so the service is replaced and reads them; services whose files did not change stay as they are."""
    config, secret_keys = stack_config("prod")
    settings = json.loads(config["1001-stories:settings"])
    settings["pgbouncer"] = {"defaultPoolSize": 24}
    changed = run_plan("prod", {**config, "1001-stories:settings": json.dumps(settings)}, secret_keys)
    before, after = containers(plan_of("prod")), containers(changed)
    for name in ("pgbouncer", "postgres"):  # PgBouncer's pool and, with it, Postgres's max_connections
        assert label(before[name], "config") != label(after[name], "config"), name
    for name in ("redis", "nginx", "prometheus"):
        assert label(before[name], "config") == label(after[name], "config"), name


def test_aliases_on_the_network_mode_network_are_refused() -> None:
    """Found by the e2e applier, reading the provider: pgbouncer would not have found `postgres`."""
    postgres = copy.deepcopy(plan_of("prod").named(CONTAINER, "postgres").inputs)
    postgres["networkMode"] = postgres["networksAdvanced"][0]["name"]
    (problem,) = aliases_reach_the_engine(CONTAINER, postgres, "postgres")
    assert "would be lost" in problem
