"""The Kubernetes Secrets the manifests name, from generated passwords (never a literal) and the
operator's secrets; every value stays a Pulumi secret."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.app import database_url, migration_database_url, redis_url
from components.credentials import Password
from configs.kubernetes import app, backup, postgres, redis
from configs.kubernetes.common import labels
from configs.render import render_redis_acl
from model.settings import Settings
from model.topology import ROLES, kubernetes_topology


class Secrets(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: Settings,
        operator_secrets: Mapping[str, pulumi.Output[str]],
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__("stories:kubernetes:Secrets", name, None, opts)
        self._namespace = settings.kubernetes.namespace
        topo = kubernetes_topology(settings)
        database_app, database_monitor = Password("database-app", self), Password("database-monitor", self)
        redis_users = {user: Password(f"redis-{user}", self) for user in ("app", "exporter", "healthcheck", "backup")}
        self.nextauth_secret = Password("nextauth-secret", self, length=48)
        self.cron_secret = Password("cron-secret", self, length=48)
        self.restic_password = Password("restic-password", self, length=64)
        self._basic_auth(postgres.APP_SECRET, settings.database.user, database_app.value)
        self._basic_auth(postgres.MONITOR_SECRET, ROLES["monitor"], database_monitor.value)
        acl = pulumi.Output.all(**{user: each.redis_hash for user, each in redis_users.items()}).apply(render_redis_acl)
        self._secret(
            redis.ACL_SECRET,
            {
                "users.acl": acl,
                "healthcheck-password": redis_users["healthcheck"].value,
                "exporter-password": redis_users["exporter"].value,
                "backup-password": redis_users["backup"].value,  # Redis's backup (configs/kubernetes/backup.py)
            },
        )
        env = {
            "DATABASE_URL": database_app.value.apply(lambda pw: database_url(settings, topo, pw)),
            app.MIGRATION_URL_KEY: database_app.value.apply(lambda pw: migration_database_url(settings, topo, pw)),
            "REDIS_URL": redis_users["app"].value.apply(lambda pw: redis_url(topo, pw)),
            "NEXTAUTH_SECRET": self.nextauth_secret.value,
            "CRON_SECRET": self.cron_secret.value,
            **operator_secrets,
        }
        self._secret(app.APP_ENV_SECRET, env)
        self._secret(backup.RESTIC_SECRET, {"RESTIC_PASSWORD": self.restic_password.value})
        self.register_outputs({})

    def _secret(self, name: str, data: Mapping[str, pulumi.Input[str]], kind: str = "Opaque") -> k8s.core.v1.Secret:
        metadata = {"name": name, "namespace": self._namespace, "labels": labels("secrets")}
        return k8s.core.v1.Secret(
            f"secret-{name}",
            metadata=metadata,
            type=kind,
            string_data={key: pulumi.Output.secret(value) for key, value in data.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _basic_auth(self, name: str, username: str, password: pulumi.Output[str]) -> None:
        self._secret(name, {"username": username, "password": password}, "kubernetes.io/basic-auth")

    def backup_writer(self, access_key_id: pulumi.Input[str], secret_key: pulumi.Input[str], region: str) -> None:
        data = {"ACCESS_KEY_ID": access_key_id, "ACCESS_SECRET_KEY": secret_key, "REGION": region}
        self._secret(postgres.BACKUP_SECRET, data)
