"""The backup service's configuration file (backup/config.py reads it)."""

from __future__ import annotations

from backup.config import BackupJobConfig, Intervals, ResticRepo
from configs.monitoring import BACKUP_METRICS_PORT
from model.settings import Settings
from model.topology import BACKUP_STANZA, Topology

PG_BIN_DIR = "/usr/lib/postgresql/15/bin"  # in the image and in Debian's postgresql-15 alike


def render_backup_config(settings: Settings, topo: Topology, stack: str) -> str:
    backup = settings.backup
    repo = topo.backup_repo
    config = BackupJobConfig(
        stack=stack,
        stanza=BACKUP_STANZA,
        pgbackrest_config=f"{topo.pgbackrest_config_dir}/pgbackrest.conf",
        pg_socket_dir=topo.postgres_socket_dir,
        pg_port=topo.postgres_port,
        pg_data_dir=topo.pg_data_dir,
        pg_bin_dir=PG_BIN_DIR,
        database=settings.database.name,
        restic=ResticRepo(
            kind=repo.kind, location=repo.restic_location, s3_endpoint=repo.s3_endpoint, ca_file=repo.ca_file
        ),
        sources=dict(topo.backup_sources),
        redis_dir=topo.backup_redis_dir,
        redis_host=topo.redis_host,
        redis_port=topo.redis_port,
        intervals=Intervals(
            full_hours=backup.postgres.full_interval_hours,
            diff_hours=backup.postgres.diff_interval_hours,
            incr_hours=backup.postgres.incr_interval_hours,
            files_minutes=backup.files.interval_minutes,
            verify_hours=backup.verify_interval_hours,
        ),
        retention_days=backup.files.retention_days,
        verify_read_data_percent=backup.files.verify_read_data_percent,
        metrics_port=BACKUP_METRICS_PORT,
        work_dir=topo.backup_work_dir,
        rpo_minutes=backup.rpo_minutes,
        rto_minutes=backup.rto_minutes,
    )
    return config.model_dump_json(indent=2) + "\n"
