"""CloudNativePG 1.27.0 (the appVersion of its chart 0.26.0, the pinned kubernetes.operators.cloudnativePg):
Cluster, Pooler and ScheduledBackup, postgresql.cnpg.io/v1. Each field checked against
github.com/cloudnative-pg/cloudnative-pg v1.27.0 config/crd/bases/postgresql.cnpg.io_clusters.yaml,
postgresql.cnpg.io_poolers.yaml and postgresql.cnpg.io_scheduledbackups.yaml (enums and required fields
as there)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tests.crds import LocalObjectReference, Metadata, Resources, SecretKeySelector, Strict

API_VERSION = "postgresql.cnpg.io/v1"


class InitDb(Strict):
    """spec.bootstrap.initdb"""

    database: str
    owner: str
    secret: LocalObjectReference
    post_init_application_sql: list[str] = Field(alias="postInitApplicationSQL")


class Bootstrap(Strict):
    initdb: InitDb


class ManagedRole(Strict):
    """spec.managed.roles[] (name required; ensure: present | absent)"""

    name: str
    ensure: Literal["present", "absent"]
    login: bool
    in_roles: list[str]
    password_secret: LocalObjectReference


class Managed(Strict):
    roles: list[ManagedRole]


class PostgresConfiguration(Strict):
    """spec.postgresql (parameters: a map of strings)"""

    parameters: dict[str, str]


class Storage(Strict):
    size: str
    storage_class: str | None = None


class Affinity(Strict):
    enable_pod_anti_affinity: bool
    topology_key: str


class S3Credentials(Strict):
    """spec.backup.barmanObjectStore.s3Credentials (each a SecretKeySelector: key and name required)"""

    access_key_id: SecretKeySelector
    secret_access_key: SecretKeySelector
    region: SecretKeySelector


class WalBackup(Strict):
    compression: Literal["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]


class DataBackup(Strict):
    compression: Literal["bzip2", "gzip", "snappy"]


class BarmanObjectStore(Strict):
    destination_path: str = Field(min_length=1)
    endpoint_url: str | None = Field(default=None, alias="endpointURL")
    s3_credentials: S3Credentials
    wal: WalBackup
    data: DataBackup


class Backup(Strict):
    barman_object_store: BarmanObjectStore
    retention_policy: str = Field(pattern=r"^[1-9][0-9]*[dwm]$")


class ClusterSpec(Strict):
    instances: int = Field(ge=1)  # required
    image_name: str
    postgresql: PostgresConfiguration
    bootstrap: Bootstrap
    managed: Managed
    storage: Storage
    resources: Resources
    affinity: Affinity
    backup: Backup | None = None


class Cluster(Strict):
    api_version: Literal["postgresql.cnpg.io/v1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec


class PgBouncer(Strict):
    """spec.pgbouncer (poolMode: session | transaction; parameters: a map of strings)"""

    pool_mode: Literal["session", "transaction"]
    parameters: dict[str, str]


class TemplateMetadata(Strict):
    labels: dict[str, str]


class Container(Strict):
    """spec.template.spec.containers[] (name required)"""

    name: str
    resources: Resources


class PodSpec(Strict):
    containers: list[Container]


class PodTemplate(Strict):
    metadata: TemplateMetadata
    spec: PodSpec


class PoolerSpec(Strict):
    cluster: LocalObjectReference  # required
    instances: int = Field(ge=0, le=2**31 - 1)  # int32
    type: Literal["rw", "ro", "r"]
    pgbouncer: PgBouncer  # required
    template: PodTemplate


class Pooler(Strict):
    api_version: Literal["postgresql.cnpg.io/v1"]
    kind: Literal["Pooler"]
    metadata: Metadata
    spec: PoolerSpec


class ScheduledBackupSpec(Strict):
    schedule: str  # required; six fields, seconds first
    cluster: LocalObjectReference  # required
    method: Literal["barmanObjectStore", "volumeSnapshot", "plugin"]
    backup_owner_reference: Literal["none", "self", "cluster"]
    immediate: bool


class ScheduledBackup(Strict):
    api_version: Literal["postgresql.cnpg.io/v1"]
    kind: Literal["ScheduledBackup"]
    metadata: Metadata
    spec: ScheduledBackupSpec
