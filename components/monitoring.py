"""Prometheus, Alertmanager, node-exporter, cAdvisor, the service exporters, a blackbox prober and,
when enabled, Grafana. Every exporter joins the monitoring network plus the one network where its
service lives; the admin UIs publish on 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

from components.container import (
    Attachment,
    HardenedContainer,
    Healthcheck,
    Mount,
    Port,
    ServiceSpec,
    Upload,
    UploadDir,
    data_mount,
)
from components.context import StackContext
from components.credentials import Credentials
from components.images_resource import pull
from configs import dashboards, healthchecks, monitoring
from model.settings import Resources
from model.topology import NGINX_STATUS_PORT, ROLES

NOBODY = "65534"
GRAFANA_UID = "472"
CONFIG_ROOT = monitoring.CONFIG_DIR
NO_SHELL = "the image is built FROM scratch (no shell, no client); Prometheus's `up` covers it"


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        ctx: StackContext,
        files: Mapping[str, Mapping[str, str]],
        receiver_secrets: pulumi.Output[Mapping[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Monitoring", name, None, opts)
        stack, settings, topo, _, networks, credentials = ctx
        self._stack = stack
        self._settings = settings
        self._networks = networks
        self.containers: dict[str, docker.Container] = {}
        m = settings.monitoring
        rendered: pulumi.Output[str] = receiver_secrets.apply(
            lambda secrets: monitoring.render_alertmanager(settings, secrets)
        )
        alertmanager_yml: pulumi.Output[str] = pulumi.Output.secret(rendered)
        self._run(
            "prometheus",
            m.resources.prometheus,
            9090,
            command=[
                f"--config.file={CONFIG_ROOT}/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={m.retention_days}d",
                "--web.console.libraries=/usr/share/prometheus/console_libraries",
                "--web.console.templates=/usr/share/prometheus/consoles",
            ],
            uploads=self._config_files("prometheus", files),
            data="/prometheus",
            # The app network: Prometheus finds the running replicas by their alias there (DNS).
            extra_network=networks.app,
            host_port=m.prometheus_host_port,
            health_path="/-/healthy",
        )
        self._run(
            "alertmanager",
            m.resources.alertmanager,
            9093,
            command=[f"--config.file={CONFIG_ROOT}/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
            uploads=[Upload("alertmanager.yml", alertmanager_yml, secret=bool(settings.secret_references()))],
            data="/alertmanager",
            host_port=m.alertmanager_host_port,
            health_path="/-/healthy",
        )
        self._run(
            "node-exporter",
            m.resources.node_exporter,
            9100,
            command=[
                "--path.rootfs=/host",
                "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run|var/lib/docker/.+)($|/)",
            ],
            mounts=[Mount("/host", host_path="/", read_only=True)],
            health_path="/metrics",
        )
        if m.cadvisor:
            self._cadvisor(m.resources.cadvisor)
        database_tls = credentials.database_tls
        self._run(
            "postgres-exporter",
            m.resources.exporter,
            9187,
            extra_network=networks.data,
            env={
                "DATA_SOURCE_URI": f"{topo.postgres_host}:{topo.postgres_port}/{settings.database.name}"
                f"?sslmode=verify-full&sslrootcert={CONFIG_ROOT}/postgres-exporter/ca.crt",
                "DATA_SOURCE_USER": ROLES["monitor"],
                "DATA_SOURCE_PASS_FILE": f"{CONFIG_ROOT}/postgres-exporter/password",
            },
            uploads=[
                Upload("ca.crt", database_tls.ca_cert_pem),
                Upload("password", credentials.database_monitor.value, secret=True),
            ],
            health_path="/metrics",
        )
        stats_dsn = pulumi.Output.concat(
            "postgres://",
            ROLES["pgbouncer_stats"],
            ":",
            credentials.pgbouncer_stats.value,
            "@",
            topo.pgbouncer_host,
            ":",
            str(topo.pgbouncer_port),
            f"/pgbouncer?sslmode=verify-full&sslrootcert={CONFIG_ROOT}/pgbouncer-exporter/ca.crt",
        )
        self._run(
            "pgbouncer-exporter",
            m.resources.exporter,
            9127,
            extra_network=networks.data,
            command=[pulumi.Output.secret(pulumi.Output.concat("--pgBouncer.connectionString=", stats_dsn))],
            uploads=[Upload("ca.crt", database_tls.ca_cert_pem)],
            health_path="/metrics",
        )
        self._run(
            "redis-exporter",
            m.resources.exporter,
            9121,
            extra_network=networks.backend,
            env={
                "REDIS_ADDR": f"redis://{topo.redis_host}:{topo.redis_port}",
                "REDIS_USER": "exporter",
                "REDIS_PASSWORD": credentials.redis_exporter.value,
            },
            user="59000",
            no_healthcheck=NO_SHELL,
        )
        self._run(
            "nginx-exporter",
            m.resources.exporter,
            9113,
            extra_network=networks.app,
            command=[f"--nginx.scrape-uri=http://nginx:{NGINX_STATUS_PORT}/stub_status"],
            no_healthcheck=NO_SHELL,
        )
        self._run(
            "blackbox-exporter",
            m.resources.exporter,
            9115,
            extra_network=networks.app,
            command=[f"--config.file={CONFIG_ROOT}/blackbox-exporter/blackbox.yml"],
            uploads=self._config_files("blackbox-exporter", files),
            health_path="/-/healthy",
        )
        if m.grafana.enabled:
            self._grafana(files, credentials)
        self.register_outputs({"prometheus": f"http://127.0.0.1:{m.prometheus_host_port}"})

    def _cadvisor(self, resources: Resources) -> None:
        self._run(
            "cadvisor",
            resources,
            8080,
            command=[
                "--docker_only=true",
                "--housekeeping_interval=30s",
                "--store_container_labels=false",
                "--disable_metrics=percpu,sched,tcp,udp,hugetlb,referenced_memory,cpu_topology,resctrl",
            ],
            mounts=[
                Mount("/rootfs", host_path="/", read_only=True),
                Mount("/var/run", host_path="/var/run", read_only=True),
                Mount("/sys", host_path="/sys", read_only=True),
                Mount("/var/lib/docker", host_path="/var/lib/docker", read_only=True),
            ],
            user="0",  # reads the Docker daemon's root-owned state; no capability added
            health_path="/healthz",
        )

    @staticmethod
    def _config_files(service: str, files: Mapping[str, Mapping[str, str]]) -> list[Upload]:
        return [Upload(path, content) for path, content in files[service].items()]

    def _run(
        self,
        service: str,
        resources: Resources,
        port: int,
        *,
        command: list[pulumi.Input[str]] | None = None,
        env: Mapping[str, pulumi.Input[str]] | None = None,
        uploads: list[Upload] | None = None,
        mounts: list[Mount] | None = None,
        data: str | None = None,
        extra_network: docker.Network | None = None,
        host_port: int | None = None,
        user: str = NOBODY,
        health_path: str | None = None,
        no_healthcheck: str = "",
    ) -> None:
        settings = self._settings
        all_mounts = list(mounts or [])
        if data:
            all_mounts.append(data_mount(service, self._stack, None, settings.host.retain_data_volumes, self, data))
        networks = [Attachment(self._networks.monitoring, [service])]
        if extra_network is not None:
            networks.append(Attachment(extra_network, [service]))
        reference = getattr(settings.images, service.replace("-", "_"))
        spec = ServiceSpec(
            service=service,
            image=pull(service, reference, self),
            image_ref=reference,
            resources=resources,
            networks=networks,
            command=command,
            env=env or {},
            user=user,
            upload_dirs=[UploadDir(f"{CONFIG_ROOT}/{service}", uploads, owner=user)] if uploads else [],
            mounts=all_mounts,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            ports=[Port(port, host_port)] if host_port else [],
            healthcheck=Healthcheck(healthchecks.http_get(port, health_path)) if health_path else None,
            no_healthcheck_reason=no_healthcheck,
        )
        self.containers[service] = HardenedContainer(
            service, self._stack, spec, pulumi.ResourceOptions(parent=self)
        ).container

    def _grafana(self, files: Mapping[str, Mapping[str, str]], credentials: Credentials) -> None:
        grafana = self._settings.monitoring.grafana
        config_dir = f"{CONFIG_ROOT}/grafana"
        self._run(
            "grafana",
            grafana.resources,
            3000,
            env={
                "GF_PATHS_PROVISIONING": f"{config_dir}/provisioning",
                "GF_SECURITY_ADMIN_USER": "admin",
                "GF_SECURITY_ADMIN_PASSWORD__FILE": f"{config_dir}/admin-password",
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_AUTH_ANONYMOUS_ENABLED": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
                "GF_SERVER_ROOT_URL": f"http://127.0.0.1:{grafana.host_port}/",
                # Grafana opens on the overview, the panels an operator looks at first.
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{monitoring.GRAFANA_DASHBOARDS_DIR}/"
                f"{dashboards.OVERVIEW_UID}.json",
            },
            uploads=[
                *self._config_files("grafana", files),
                Upload("admin-password", credentials.grafana_admin.value, secret=True),
            ],
            data="/var/lib/grafana",
            host_port=grafana.host_port,
            user=GRAFANA_UID,
            health_path="/api/health",
        )
