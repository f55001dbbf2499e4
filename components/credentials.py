"""Generated passwords, their verifiers, and the database's private TLS authority.

Every password is a pulumi_random RandomPassword (secret in state and outputs). Where a service can
store a verifier instead of the password, the verifier is derived here with a salt that is itself a
generated RandomBytes, so it is stable across runs and no file ever holds the plaintext.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from configs.credentials import redis_acl_hash, scram_sha256_verifier
from model.settings import Settings

CERT_VALIDITY_HOURS = 10 * 365 * 24


class Password:
    """A generated password and what services store instead of it."""

    def __init__(self, name: str, parent: pulumi.Resource, length: int = 32) -> None:
        opts = pulumi.ResourceOptions(parent=parent)
        # URL-safe characters only: these passwords also appear in connection URLs.
        self._password = random.RandomPassword(f"{name}-password", length=length, special=False, opts=opts)
        self.value: pulumi.Output[str] = pulumi.Output.secret(self._password.result)
        self._salt: random.RandomBytes | None = None
        self._name = name
        self._parent = parent

    def _salt_b64(self) -> pulumi.Output[str]:
        if self._salt is None:
            self._salt = random.RandomBytes(
                f"{self._name}-scram-salt", length=16, opts=pulumi.ResourceOptions(parent=self._parent)
            )
        salt: pulumi.Output[str] = self._salt.base64
        return salt

    @property
    def scram_verifier(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(
            pulumi.Output.all(self.value, self._salt_b64()).apply(
                lambda args: scram_sha256_verifier(args[0], base64.b64decode(args[1]))
            )
        )

    @property
    def redis_hash(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.value.apply(redis_acl_hash))


class Credentials(pulumi.ComponentResource):
    """All generated secrets of a stack, in one place."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:platform:Credentials", name, None, opts)
        self.postgres_superuser = Password("postgres-superuser", self)
        self.database_app = Password("database-app", self)
        self.database_monitor = Password("database-monitor", self)
        self.pgbouncer_admin = Password("pgbouncer-admin", self)
        self.pgbouncer_stats = Password("pgbouncer-stats", self)
        self.redis_app = Password("redis-app", self)
        self.redis_exporter = Password("redis-exporter", self)
        self.redis_healthcheck = Password("redis-healthcheck", self)
        self.redis_backup = Password("redis-backup", self)
        self.pgbackrest_cipher = Password("pgbackrest-cipher", self, length=64)
        self.restic_password = Password("restic-password", self, length=64)
        self.nextauth_secret = Password("nextauth-secret", self, length=48)
        # The bearer token of the app's cron routes (`Authorization: Bearer $CRON_SECRET`).
        self.cron_secret = Password("cron-secret", self, length=48)
        self.grafana_admin = Password("grafana-admin", self)
        self.database_tls = DatabaseTls("database-tls", pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def _key(name: str, parent: pulumi.Resource) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=parent))


class DatabaseTls(pulumi.ComponentResource):
    """A private CA for database traffic: Postgres's and PgBouncer's server certificates, and the client
    certificate with which PgBouncer's lookup role proves itself (so that role needs no password anywhere)."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:platform:DatabaseTls", name, None, opts)
        ca_key = _key("ca-key", self)
        ca = tls.SelfSignedCert(
            "ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=CERT_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            subject=tls.SelfSignedCertSubjectArgs(common_name="1001 Stories database CA"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ca_cert_pem: pulumi.Output[str] = ca.cert_pem
        self.server_key_pem, self.server_cert_pem = self._issue(
            "postgres-server", ca_key, ca, common_name="postgres", dns_names=["postgres"], uses=["server_auth"]
        )
        self.client_key_pem, self.client_cert_pem = self._issue(
            "pgbouncer-client", ca_key, ca, common_name="pgbouncer_auth", dns_names=[], uses=["client_auth"]
        )
        self.pgbouncer_key_pem, self.pgbouncer_cert_pem = self._issue(
            "pgbouncer-server", ca_key, ca, common_name="pgbouncer", dns_names=["pgbouncer"], uses=["server_auth"]
        )
        self.register_outputs({"caCertPem": self.ca_cert_pem})

    def _issue(
        self,
        name: str,
        ca_key: tls.PrivateKey,
        ca: tls.SelfSignedCert,
        common_name: str,
        dns_names: list[str],
        uses: list[str],
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        key = _key(f"{name}-key", self)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            dns_names=dns_names or None,
            subject=tls.CertRequestSubjectArgs(common_name=common_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=CERT_VALIDITY_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", *uses],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return pulumi.Output.secret(key.private_key_pem), cert.cert_pem


def _value_of(key: str, values: Mapping[str, str]) -> str:
    return values[key]


def operator_secret_env(settings: Settings, secrets: pulumi.Output[Mapping[str, str]]) -> dict[str, pulumi.Output[str]]:
    """The app's environment variables the operator sets as Pulumi secrets (`app.secretEnv`), each its own
    secret Output."""
    return {name: secrets.apply(functools.partial(_value_of, name)) for name in settings.app.secret_env}
