"""The whole platform of one stack: networks, data services, app, proxy, monitoring, backup bucket."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.app import App
from components.backup import BackupService, backup_capable_postgres
from components.backup_bucket import BackupBucket
from components.cache import Cache
from components.context import StackContext
from components.credentials import Credentials, operator_secret_env
from components.cron import Cron
from components.database import Database
from components.monitoring import Monitoring
from components.network import Networks
from components.pooler import Pooler
from components.proxy import Proxy
from components.scaler import AppScaler
from configs.render import image_versions, render_monitoring
from model.settings import Settings
from model.topology import container_topology


class Platform(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        stack: str,
        settings: Settings,
        secrets: pulumi.Output[Mapping[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:platform:Platform", name, None, opts)
        topo = container_topology(settings)
        versions = image_versions(settings)
        docker_provider = docker.Provider(
            "docker",
            host=settings.host.docker_host,
            ssh_opts=settings.host.ssh_opts or None,
            opts=pulumi.ResourceOptions(parent=self),
        )

        def on_docker(*after: pulumi.Resource, retain_on_delete: bool | None = None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, providers=[docker_provider], depends_on=list(after), retain_on_delete=retain_on_delete
            )

        credentials = Credentials("credentials", pulumi.ResourceOptions(parent=self))
        networks = Networks("networks", stack, settings, on_docker())
        ctx = StackContext(stack, settings, topo, versions, networks, credentials)
        self.outputs: dict[str, pulumi.Input[object]] = {}
        bucket = self._bucket(stack, settings) if settings.backup.s3.enabled else None
        postgres_image = backup_capable_postgres(settings, self)
        backup_work = docker.Volume(
            "backup-work",
            name=f"{stack}-backup-work",
            opts=on_docker(retain_on_delete=settings.host.retain_data_volumes),
        )
        database = Database("database", ctx, postgres_image, bucket, backup_work, on_docker())
        pooler = Pooler("pooler", ctx, on_docker(database))
        cache = Cache("cache", ctx, on_docker())
        secret_env = operator_secret_env(settings, secrets)
        # The migration goes to Postgres directly: after the database (healthy: its container is waited for).
        app = App("app", ctx, secret_env, [database], on_docker(pooler, cache))
        proxy = Proxy("proxy", ctx, app.data_volumes, on_docker(app))
        shared = {
            "postgres-data": database.data,
            "postgres-run": database.socket,
            "redis-data": cache.data,
            "certificates": proxy.letsencrypt,
        }
        BackupService(
            "backup", ctx, postgres_image, bucket, shared, app.data_volumes, backup_work, on_docker(database, cache)
        )
        if settings.monitoring.enabled:
            Monitoring("monitoring", ctx, render_monitoring(settings), secrets, on_docker())
        if settings.scaling.enabled:
            AppScaler("scaler", ctx, on_docker(app))
        if settings.cron.enabled:
            Cron("cron", ctx, on_docker(app))
        self.outputs.update(
            {
                "url": settings.public_url,
                "appReplicas": settings.app.replicas,
                "appReplicasMax": len(app.containers),
                # Without these the backups cannot be read: keep them outside this stack's state too.
                "backupCipherPassphrase": credentials.pgbackrest_cipher.value,
                "backupResticPassword": credentials.restic_password.value,
                # For calling a cron route by hand: curl -H "Authorization: Bearer $(...)" .../api/cron/...
                "cronSecret": credentials.cron_secret.value,
            }
        )
        if settings.monitoring.enabled:
            self.outputs["prometheusUrl"] = f"http://127.0.0.1:{settings.monitoring.prometheus_host_port}"
            self.outputs["alertmanagerUrl"] = f"http://127.0.0.1:{settings.monitoring.alertmanager_host_port}"
            if settings.monitoring.grafana.enabled:
                self.outputs["grafanaUrl"] = f"http://127.0.0.1:{settings.monitoring.grafana.host_port}"
                self.outputs["grafanaAdminPassword"] = credentials.grafana_admin.value
        self.register_outputs(self.outputs)

    def _bucket(self, stack: str, settings: Settings) -> BackupBucket:
        s3 = settings.backup.s3
        aws_provider = aws.Provider("aws", region=s3.region, opts=pulumi.ResourceOptions(parent=self))
        bucket = BackupBucket("backup", stack, s3, pulumi.ResourceOptions(parent=self, providers=[aws_provider]))
        self.outputs["backupBucket"] = bucket.bucket.bucket
        if bucket.access_key_id is not None:
            self.outputs["backupWriterAccessKeyId"] = bucket.access_key_id
            self.outputs["backupWriterSecretAccessKey"] = bucket.secret_access_key
        if bucket.role_arn is not None:
            self.outputs["backupWriterRoleArn"] = bucket.role_arn
        return bucket
