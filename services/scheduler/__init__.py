"""Cron-triggered runs, and the deployment fold shared with the other triggers (docs/triggers.md)."""
