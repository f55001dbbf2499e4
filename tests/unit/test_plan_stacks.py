"""The program against Pulumi mocks, for every stack: what each resource is given."""

from __future__ import annotations

import json
import re
from itertools import combinations
from typing import Any

import pytest
import yaml

from model.images import parse_image
from model.loading import ConfigError
from tests.conftest import plan_of
from tools import plan as plan_module
from tools.plan import CONTAINER, SECRET, Plan, run_plan, stack_config

NETWORK = "docker:index/network:Network"


def containers(plan: Plan) -> dict[str, dict[str, Any]]:
    """The services' containers by resource name: the container's name without the stack prefix (and,
    for an app replica, without its generation), config containers apart."""
    return {r.name: r.inputs for r in plan.of_type(CONTAINER) if label(r.inputs, "role") != "config"}


def config_containers(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each service's config container (the one that receives its uploads), by the service's name."""
    return {
        r.name.removesuffix("-config"): r.inputs for r in plan.of_type(CONTAINER) if label(r.inputs, "role") == "config"
    }


def label(inputs: dict[str, Any], key: str) -> str | None:
    return next((lbl["value"] for lbl in inputs.get("labels", []) if lbl["label"] == f"org.1001stories.{key}"), None)


def inputs_service(inputs: dict[str, Any]) -> str:
    return str(label(inputs, "service"))


def networks_of(inputs: dict[str, Any]) -> set[str]:
    return {str(n["name"]).split("-", 1)[1] for n in inputs.get("networksAdvanced") or []}


def replicas(plan: Plan) -> dict[str, dict[str, Any]]:
    """The app's replicas (the containers with a replica label), by resource name ("app-1")."""
    return {name: inputs for name, inputs in containers(plan).items() if label(inputs, "replica")}


def one_shots(plan: Plan) -> dict[str, dict[str, Any]]:
    """The containers `pulumi up` runs to their exit: the app's migration and its volumes' owner."""
    return {name: inputs for name, inputs in containers(plan).items() if inputs.get("attach")}


def test_every_container_is_limited_and_hardened(stack_plan: Plan) -> None:
    for name, inputs in containers(stack_plan).items():
        assert inputs["memory"] > 0 and 0 < inputs["memoryReservation"] <= inputs["memory"], name
        assert float(inputs["cpus"]) > 0, name
        assert inputs["logDriver"] == "json-file" and inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}, name
        # A one-shot runs once: never restarted, never started again by a later `pulumi up`.
        assert inputs["restart"] == ("no" if name in one_shots(stack_plan) else "unless-stopped"), name
        assert "no-new-privileges:true" in inputs["securityOpts"], name
        assert inputs["capabilities"]["drops"] == ["ALL"], name
        assert not inputs.get("privileged"), name
        assert label(inputs, "stack") == stack_plan.stack and label(inputs, "service"), name
        if name == "app-volumes":  # changes owners of volumes and exits: no network, nothing to check
            assert inputs["networkMode"] == "none" and not inputs.get("networksAdvanced"), name
            continue
        # Aliases reach the engine only on networks connected after creation (README: the e2e layer).
        assert inputs["networkMode"] == "bridge" and inputs["networksAdvanced"], name
        assert inputs.get("healthcheck") or name in ("redis-exporter", "nginx-exporter", "app-migration"), name


def test_non_root_and_read_only_where_the_image_allows(stack_plan: Plan) -> None:
    runs_as_root = {
        "cadvisor": "reads the Docker daemon's state",
        "certbot": "chowns the renewed key",
        "app-volumes": "gives the app's data volumes to its user, with CHOWN alone",
    }
    for name, inputs in containers(stack_plan).items():
        assert inputs["readOnly"] is True or name in ("certbot",), name
        if name in runs_as_root:
            continue
        assert inputs.get("user") and not str(inputs["user"]).startswith("0"), name
    certbot = containers(stack_plan).get("certbot")
    if certbot:
        assert certbot["capabilities"].get("adds") == ["CHOWN"]
        assert "CHOWN" in str(label(certbot, "capabilities"))
    owner = containers(stack_plan)["app-volumes"]
    assert owner["capabilities"].get("adds") == ["CHOWN"] and "CHOWN" in str(label(owner, "capabilities"))


def test_only_nginx_publishes_to_the_world(stack_plan: Plan) -> None:
    for name, inputs in containers(stack_plan).items():
        for port in inputs.get("ports", []):
            if name == "nginx":
                assert port["ip"] == "0.0.0.0" and int(port["external"]) in (80, 443)
            else:
                assert port["ip"] == "127.0.0.1", (name, port)
    nginx_ports = sorted(int(p["external"]) for p in containers(stack_plan)["nginx"]["ports"])
    assert nginx_ports == [80, 443]
    for name, inputs in containers(stack_plan).items():
        if name.startswith("app"):
            assert not inputs.get("ports"), "the app never publishes a port"


def test_images_are_pinned(stack_plan: Plan) -> None:
    for image in stack_plan.of_type("docker:index/remoteImage:RemoteImage"):
        reference = parse_image(image.inputs["name"])
        assert reference.tag != "latest"
    built = {str(image.inputs["imageName"]) for image in stack_plan.of_type("docker:index/image:Image")}
    for name, inputs in containers(stack_plan).items():
        pinned = label(inputs, "image")
        assert pinned and parse_image(pinned), name
        # A pulled image is passed by id (no perpetual diff); a built one by its pinned name.
        assert inputs["image"].startswith("sha256:") or inputs["image"] in built, name


def test_postgres_and_redis_are_on_internal_networks_only(stack_plan: Plan) -> None:
    internal = {str(n.inputs["name"]).split("-", 1)[1]: n.inputs["internal"] for n in stack_plan.of_type(NETWORK)}
    expected = {"edge": False, "app": True, "backend": True, "data": True, "monitoring": False}
    if stack_plan.stack != "dev":  # the scaler's network with the Docker API proxy
        expected["control"] = True
    egress = {"egress-app": False}  # the app reaches outside APIs; Postgres and backups reach S3
    if stack_plan.stack != "dev":
        egress.update({"egress-postgres": False, "egress-backup": False})
    assert internal == {**expected, **egress}
    running = containers(stack_plan)
    assert networks_of(running["postgres"]) == ({"data"} if stack_plan.stack == "dev" else {"data", "egress-postgres"})
    assert networks_of(running["redis"]) == {"backend"}
    for name, inputs in running.items():
        joined = {n for n in networks_of(inputs) if n.startswith("egress-")}
        assert joined <= {f"egress-{inputs_service(inputs)}"}, f"{name}: an egress network is one service's own"


def reachable(plan: Plan) -> set[frozenset[str]]:
    """Pairs of containers that share a network."""
    running = containers(plan)
    return {frozenset((a, b)) for a, b in combinations(running, 2) if networks_of(running[a]) & networks_of(running[b])}


def test_network_isolation(stack_plan: Plan) -> None:
    pairs = reachable(stack_plan)
    running = containers(stack_plan)
    apps = list(replicas(stack_plan))
    assert apps
    for app in apps:
        assert frozenset(("nginx", app)) in pairs
        assert frozenset((app, "pgbouncer")) in pairs and frozenset((app, "redis")) in pairs
        assert frozenset((app, "postgres")) not in pairs, "the app reaches Postgres only through PgBouncer"
    # The migration reaches Postgres and nothing but the data network's; the volume owner, nothing at all.
    assert networks_of(running["app-migration"]) == {"data"}
    assert not networks_of(running["app-volumes"])
    assert frozenset(("pgbouncer", "postgres")) in pairs
    for store in ("postgres", "redis"):
        assert frozenset(("nginx", store)) not in pairs
        for name in running:
            if "nginx" in name or "certbot" in name:
                assert frozenset((name, store)) not in pairs


def test_no_secret_in_plaintext(stack_plan: Plan) -> None:
    text = json.dumps(stack_plan.as_json())
    # The mocks' generated passwords and keys look like these; none may appear.
    assert not re.search(r"\bpw-[0-9a-f]{16}\b", text)
    assert "PRIVATE KEY" not in text
    app = containers(stack_plan)["app-1"]
    env = dict(entry.split("=", 1) for entry in app["envs"])
    for name in ("DATABASE_URL", "REDIS_URL", "NEXTAUTH_SECRET"):
        assert env[name] == SECRET
    assert env["NEXTAUTH_URL"].startswith("https://")
    for inputs in config_containers(stack_plan).values():
        for upload in inputs.get("uploads", []):
            if upload["file"].endswith((".key", "privkey.pem", "userlist.txt", ".acl", ".password", ".scram")):
                assert upload["content"] == SECRET and upload["permissions"] == "0400", upload["file"]
    for password in stack_plan.of_type("random:index/randomPassword:RandomPassword"):
        assert password.inputs["length"] >= 32


def test_replicas_follow_the_stack(stack_plan: Plan) -> None:
    """dev runs one replica; staging and prod keep two running and create a third, stopped, that the
    scaler may start, and which a later `pulumi up` neither starts nor stops."""
    floor, created = {"dev": (1, 1), "staging": (2, 3), "prod": (2, 3)}[stack_plan.stack]
    apps = replicas(stack_plan)
    assert len(apps) == created == stack_plan.outputs["appReplicasMax"]
    assert stack_plan.outputs["appReplicas"] == floor
    for name, inputs in apps.items():
        always = int(name.rsplit("-", 1)[1]) <= floor
        assert inputs["mustRun"] is always and inputs.get("start", True) is always, name


def uploaded(plan: Plan, service: str) -> dict[str, str]:
    """The files a service reads: the uploads of its config container."""
    return {u["file"]: u["content"] for u in config_containers(plan)[service].get("uploads", [])}


def test_config_files_are_uploaded_where_the_service_reads_them(stack_plan: Plan) -> None:
    running = containers(stack_plan)
    postgres = running["postgres"]
    config_file = next(arg.split("=", 1)[1] for arg in postgres["command"] if arg.startswith("config_file="))
    files = uploaded(stack_plan, "postgres")
    assert "shared_buffers = 128MB" in files[config_file]
    hba = re.search(r"hba_file = '([^']+)'", files[config_file])
    assert hba and hba.group(1) in files
    assert any(path.startswith("/docker-entrypoint-initdb.d/") for path in files)
    pgbouncer = running["pgbouncer"]
    assert "pool_mode = transaction" in uploaded(stack_plan, "pgbouncer")[pgbouncer["command"][0]]
    redis = running["redis"]
    assert "maxmemory 256mb" in uploaded(stack_plan, "redis")[redis["command"][1]]
    nginx = running["nginx"]
    start = uploaded(stack_plan, "nginx")[nginx["entrypoints"][1]]
    nginx_conf = re.search(r'conf="([^"]+)"', start)
    assert nginx_conf and "limit_req_zone" in uploaded(stack_plan, "nginx")[nginx_conf.group(1)]
    prometheus = running["prometheus"]
    prom_config = next(arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file="))
    assert yaml.safe_load(uploaded(stack_plan, "prometheus")[prom_config])["rule_files"]
    assert "--storage.tsdb.retention.time=15d" in prometheus["command"]
    if "grafana" in running:
        env = dict(entry.split("=", 1) for entry in running["grafana"]["envs"])
        home = json.loads(uploaded(stack_plan, "grafana")[env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]])
        assert home["uid"] == "stories-overview"
    for name, config in config_containers(stack_plan).items():
        in_config = {v["containerPath"]: v["volumeName"] for v in config["volumes"] if not v.get("readOnly")}
        in_service = {v["containerPath"]: v for v in running[name]["volumes"]}
        assert not running[name].get("uploads"), f"{name}: Docker refuses uploads into a read-only container"
        for path in uploaded(stack_plan, name):
            directory = next(m for m in in_config if path.startswith(m + "/"))
            mount = in_service[directory]
            assert mount["volumeName"] == in_config[directory] and mount["readOnly"] is True, (name, path)


def test_every_guide_alert_is_rendered(stack_plan: Plan) -> None:
    alerts_file = next(c for f, c in uploaded(stack_plan, "prometheus").items() if f.endswith("alerts.yml"))
    rules = {rule["alert"]: rule for group in yaml.safe_load(alerts_file)["groups"] for rule in group["rules"]}
    guide = {
        "ServiceDown",
        "DatabaseConnectionFailures",
        "HostMemoryHigh",
        "ContainerMemoryHigh",
        "DiskSpaceLow",
        "HostCpuHigh",
        "SlowResponses",
        "ActiveSessionsHigh",
        "BackupFailed",
        "BackupLate",
        "WalArchivingFailing",
    }
    assert guide <= set(rules)
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]


def test_backup_bucket_protections() -> None:
    assert not plan_of("dev").of_type("aws:s3/bucket:Bucket")
    for stack in ("staging", "prod"):
        plan = plan_of(stack)
        (bucket,) = plan.of_type("aws:s3/bucket:Bucket")
        block = plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].inputs
        assert all(
            block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        ownership = plan.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")[0].inputs
        assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        versioning = plan.of_type("aws:s3/bucketVersioning:BucketVersioning")[0].inputs
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        sse = plan.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        assert sse[0].inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        policy = json.loads(plan.of_type("aws:s3/bucketPolicy:BucketPolicy")[0].inputs["policy"])
        (deny,) = policy["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        lifecycle = plan.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0].inputs
        by_id = {rule["id"]: rule for rule in lifecycle["rules"]}
        everything = by_id["abort-incomplete-uploads-and-old-versions"]
        assert everything["noncurrentVersionExpiration"]["noncurrentDays"] == 7
        assert everything["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1
        assert by_id["expire-dumps"]["expiration"]["days"] == 30
        assert by_id["expire-dumps"]["filter"]["prefix"] == "dumps/"
        writer = json.loads(plan.of_type("aws:iam/userPolicy:UserPolicy")[0].inputs["policy"])
        object_statement = next(s for s in writer["Statement"] if "s3:PutObject" in s["Action"])
        assert all(r.endswith(("/pgbackrest/*", "/restic/*")) for r in object_statement["Resource"])
        assert not any("s3:*" in s["Action"] for s in writer["Statement"])
        assert plan.outputs["backupWriterSecretAccessKey"] == SECRET
        assert plan.outputs["backupWriterAccessKeyId"] == SECRET
        assert bucket.inputs["bucketPrefix"].startswith("stories-backup-")


def test_kms_and_role_writer_variant() -> None:
    config, secret_keys = stack_config("prod")
    settings = json.loads(config["1001-stories:settings"])
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings["backup"]["s3"].update(
        {"kmsKeyArn": key, "writer": "role", "writerTrustedPrincipalArn": "arn:aws:iam::123456789012:role/backup-host"}
    )
    plan = run_plan("prod", {**config, "1001-stories:settings": json.dumps(settings)}, secret_keys)
    sse = plan.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse[0].inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}
    assert rule["bucketKeyEnabled"] is True
    assert not plan.of_type("aws:iam/user:User") and not plan.of_type("aws:iam/accessKey:AccessKey")
    policy = json.loads(plan.of_type("aws:iam/rolePolicy:RolePolicy")[0].inputs["policy"])
    assert any(s["Resource"] == key for s in policy["Statement"])
    assert "backupWriterRoleArn" in plan.outputs


def test_secret_env_from_stack_secrets_stays_secret() -> None:
    config, _ = stack_config("dev")
    settings = json.loads(config["1001-stories:settings"])
    settings["app"]["secretEnv"] = ["SMTP_PASSWORD"]
    settings["app"]["env"] = {"MAIL_FROM": "noreply@stories.example.org"}
    secret_value = "generated-" + "x" * 8
    config = {
        **config,
        "1001-stories:settings": json.dumps(settings),
        "1001-stories:secrets": json.dumps({"SMTP_PASSWORD": secret_value}),
    }
    plan = run_plan("dev", config, ["1001-stories:secrets"])
    env = dict(entry.split("=", 1) for entry in containers(plan)["app-1"]["envs"])
    assert env["SMTP_PASSWORD"] == SECRET and env["MAIL_FROM"] == "noreply@stories.example.org"
    assert secret_value not in json.dumps(plan.as_json())


def test_bad_config_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors: list[plan_module.RecordingMonitor] = []

    class Watched(plan_module.RecordingMonitor):
        def __init__(self, mocks: Any, revealed: bool = False) -> None:
            super().__init__(mocks, revealed)
            monitors.append(self)

    monkeypatch.setattr(plan_module, "RecordingMonitor", Watched)
    config, _ = stack_config("dev")
    settings = json.loads(config["1001-stories:settings"])
    settings["pgbouncer"] = {"defaultPoolSize": 0}
    with pytest.raises(ConfigError, match=r"settings\.pgbouncer\.defaultPoolSize = 0"):
        run_plan("dev", {**config, "1001-stories:settings": json.dumps(settings)}, [])
    (monitor,) = monitors
    assert monitor.recorded == []


def test_dev_builds_the_app_with_buildkit() -> None:
    (image,) = [i for i in plan_of("dev").of_type("docker:index/image:Image") if i.name == "app-image"]
    build = image.inputs["build"]
    assert build["builderVersion"] == "BuilderBuildKit"
    assert image.inputs["skipPush"] is True


def test_backups_are_wired_to_the_repositories(stack_plan: Plan) -> None:
    running = containers(stack_plan)
    postgres, backup = running["postgres"], running["backup"]
    assert label(postgres, "image") == label(backup, "image")  # one backup-capable Postgres image
    conf = uploaded(stack_plan, "postgres")["/etc/stories/postgres/postgresql.conf"]
    assert "archive_mode = on" in conf and "archive_timeout = 60s" in conf and "archive-push %p" in conf
    env = dict(entry.split("=", 1) for entry in backup["envs"])
    assert env["PGBACKREST_REPO1_CIPHER_PASS"] == SECRET and env["RESTIC_PASSWORD"] == SECRET
    pgbackrest = uploaded(stack_plan, "backup")["/etc/stories/pgbackrest/pgbackrest.conf"]
    assert "repo1-cipher-type=aes-256-cbc" in pgbackrest and "repo1-retention-full=30" in pgbackrest
    mounts = {v["containerPath"]: v for v in backup["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["readOnly"] is False  # `restore --live`, Postgres stopped
    for source in (
        "/backup-sources/uploads",
        "/backup-sources/books",
        "/backup-sources/letsencrypt",
        "/backup-sources/redis",
    ):
        assert mounts[source]["readOnly"] is True, source
    if stack_plan.stack == "dev":
        assert "repo1-type=posix" in pgbackrest and "PGBACKREST_REPO1_S3_BUCKET" not in env
        assert any(v["containerPath"] == "/var/lib/stories-backup" for v in postgres["volumes"])
    else:
        assert "repo1-type=s3" in pgbackrest and "repo1-s3-uri-style=host" in pgbackrest
        assert env["PGBACKREST_REPO1_S3_KEY_SECRET"] == SECRET and env["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert stack_plan.outputs["backupCipherPassphrase"] == SECRET
    assert stack_plan.outputs["backupResticPassword"] == SECRET


def test_the_entry_point_turns_bad_config_into_one_run_error() -> None:
    """`pulumi up` with a bad stack file: a RunError (printed without a traceback) naming key, value and rule."""
    import runpy
    from pathlib import Path

    import pulumi

    config, _ = stack_config("dev")
    settings = json.loads(config["1001-stories:settings"])
    settings["redis"] = {"maxmemoryMb": 1024}
    pulumi.runtime.set_all_config({**config, "1001-stories:settings": json.dumps(settings)}, [])
    pulumi.runtime.set_mocks(plan_module.PlanMocks(), project="1001-stories", stack="dev", preview=True)
    entry = Path(__file__).resolve().parents[2] / "__main__.py"
    with pytest.raises(pulumi.RunError) as raised:
        runpy.run_path(str(entry), run_name="__main__")
    assert "settings.redis.resources.memoryMb = 512: must be at least 2048" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_app_reaches_pgbouncer_over_verified_tls(stack_plan: Plan) -> None:
    from components.app import database_url
    from model.topology import container_topology
    from tools.plan import settings_for

    settings = settings_for(stack_plan.stack)
    url = database_url(settings, container_topology(settings), "p@ss/word")
    assert url.startswith("postgresql://stories_user:p%40ss%2Fword@pgbouncer:6432/stories_db?pgbouncer=true")
    query = dict(item.split("=", 1) for item in url.split("?", 1)[1].split("&"))
    ca_path = query["sslcert"]
    # Prisma checks the certificate against sslcert only with sslaccept=strict (its default accepts any).
    assert query["sslmode"] == "require" and query["sslaccept"] == "strict"
    assert uploaded(stack_plan, "app-1")[ca_path].startswith("-----BEGIN CERTIFICATE-----")
    pgbouncer_ini = uploaded(stack_plan, "pgbouncer")["/etc/stories/pgbouncer/pgbouncer.ini"]
    assert "client_tls_sslmode = require" in pgbouncer_ini
