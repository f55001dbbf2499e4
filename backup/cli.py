"""stories-backup: the one command line of the platform's backups, used by the schedules and by operators.

  stories-backup service                      run the schedules (the backup container's main process)
  stories-backup init                         create the pgBackRest stanza and the restic repository
  stories-backup backup postgres|files|redis|all [--type full|diff|incr]
  stories-backup verify                       check archiving and every checksum in both repositories
  stories-backup status                       last success of each kind, WAL archiving state
  stories-backup heartbeat                    write the heartbeat row (keeps WAL moving: the RPO stays bounded)
  stories-backup restore --into DIR [--target-time T]         Postgres into DIR/postgres, files into DIR/files
  stories-backup restore --live --confirm STACK [--target-time T]   over the stack's data; Postgres stopped
  stories-backup drill [--target-time T]      restore into a throwaway Postgres, compare, measure RPO and RTO

Configuration: --config (default /etc/stories/backup/backup.json). Secrets come from the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from backup import jobs
from backup.config import BackupJobConfig
from backup.tools import BackupError

DEFAULT_CONFIG = "/etc/stories/backup/backup.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stories-backup", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("service")
    commands.add_parser("init")
    backup = commands.add_parser("backup")
    backup.add_argument("kind", choices=["postgres", "files", "redis", "all"])
    backup.add_argument("--type", default="incr", choices=jobs.POSTGRES_KINDS)
    commands.add_parser("verify")
    commands.add_parser("status")
    commands.add_parser("heartbeat", help="write the heartbeat row now (the service does so every 15 s)")
    restore = commands.add_parser("restore")
    where = restore.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", type=Path, help="an empty directory; the running database is not touched")
    where.add_argument("--live", action="store_true", help="restore over the stack's own data directory")
    restore.add_argument("--confirm", default="", help="the stack's name, required with --live")
    restore.add_argument("--target-time", default=None, help="e.g. '2027-05-10 14:03:00+02'")
    drill = commands.add_parser("drill")
    drill.add_argument("--target-time", default=None)
    return parser


def _backup(config: BackupJobConfig, kind: str, postgres_type: str) -> list[str]:
    done = []
    if kind in ("postgres", "all"):
        done.append(jobs.backup_postgres(config, postgres_type))
    if kind in ("files", "all"):
        done.append(jobs.backup_files(config))
    if kind in ("redis", "all"):
        done.append(jobs.backup_redis(config))
    return done


def _restore(config: BackupJobConfig, args: argparse.Namespace) -> list[str]:
    if args.live:
        if args.confirm != config.stack:
            raise BackupError(
                f"--live overwrites the {config.stack} database: repeat the stack's name with --confirm {config.stack}"
            )
        seconds = jobs.restore_live(config, args.target_time)
        return [f"restored Postgres over {config.pg_data_dir} in {seconds:.1f} s; start Postgres to finish recovery"]
    into: Path = args.into
    if into.exists() and any(into.iterdir()):
        raise BackupError(f"--into {into}: the directory is not empty; nothing was written")
    (into / "postgres").mkdir(parents=True, mode=0o700)
    seconds = jobs.restore_postgres(config, str(into / "postgres"), args.target_time)
    jobs.restore_files(config, str(into / "files"))
    return [f"restored Postgres into {into / 'postgres'} in {seconds:.1f} s", f"restored files into {into / 'files'}"]


def _drill(config: BackupJobConfig, target_time: str | None) -> int:
    report = jobs.drill(config, target_time)
    for table in report.tables:
        state = "ok" if table.matches else "DIFFERS"
        print(f"  {table.table:<40} source {table.source_rows:>10}  restored {table.restored_rows!s:>10}  {state}")
    rpo = f"{report.rpo_seconds:.0f} s" if report.rpo_seconds is not None else "unknown (no WAL archived yet)"
    print(f"RTO (restore until it answers queries): {report.rto_seconds:.1f} s  (objective {config.rto_minutes} min)")
    print(f"RPO (age of the newest archived WAL): {rpo}  (objective {config.rpo_minutes} min)")
    print("drill passed" if report.ok else "drill FAILED: restored tables differ from the source (see above)")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        config = BackupJobConfig.model_validate_json(args.config.read_text())
    except (OSError, ValueError) as error:
        print(f"error: --config {args.config}: {error}", file=sys.stderr)
        return 2
    try:
        if args.command == "service":
            from backup.service import serve

            serve(config)
        elif args.command == "init":
            jobs.ensure_repositories(config)
            print("repositories ready")
        elif args.command == "backup":
            print("\n".join(_backup(config, args.kind, args.type)))
        elif args.command == "verify":
            print(jobs.verify(config))
        elif args.command == "status":
            found = {kind: when.isoformat() for kind, when in jobs.last_successes(config).items()}
            wal = jobs.wal_status(config)
            print(
                json.dumps(
                    {
                        "last_success": found,
                        "wal_archive_failing": wal.failing,
                        "wal_last_archived_age_seconds": wal.last_archived_age_seconds,
                        "now": datetime.now(UTC).isoformat(),
                    },
                    indent=2,
                )
            )
        elif args.command == "heartbeat":
            jobs.heartbeat(config)
            print("heartbeat written")
        elif args.command == "restore":
            print("\n".join(_restore(config, args)))
        elif args.command == "drill":
            return _drill(config, args.target_time)
    except BackupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
