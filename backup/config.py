"""What the backup tooling needs to know, rendered by the program into backup.json (configs/backup.py).
Secrets and the bucket's name come from the environment, never from this file."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResticRepo(Model):
    kind: str  # "s3" or "posix"
    location: str  # a path, or the prefix inside the bucket
    s3_endpoint: str | None = None
    ca_file: str | None = None

    def url(self) -> str:
        if self.kind != "s3":
            return self.location
        bucket = os.environ.get("STORIES_BACKUP_BUCKET", "")
        if not bucket:
            raise KeyError("STORIES_BACKUP_BUCKET")
        return f"s3:https://{self.s3_endpoint}/{bucket}/{self.location}"


class Intervals(Model):
    full_hours: int
    diff_hours: int
    incr_hours: int
    files_minutes: int
    verify_hours: int


class BackupJobConfig(Model):
    stack: str
    stanza: str
    pgbackrest_config: str
    pg_socket_dir: str
    pg_port: int
    pg_data_dir: str
    pg_bin_dir: str
    database: str
    restic: ResticRepo
    sources: dict[str, str]  # name -> directory backed up as "files"
    redis_dir: str
    redis_host: str
    redis_port: int
    intervals: Intervals
    retention_days: int
    verify_read_data_percent: int
    metrics_port: int
    work_dir: str
    rpo_minutes: int
    rto_minutes: int
