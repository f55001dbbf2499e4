"""Backups and restores of the platform: pgBackRest for Postgres, restic for files and Redis."""
