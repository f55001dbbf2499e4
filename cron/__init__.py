"""The cron service: the app's scheduled calls (cron/service.py)."""
