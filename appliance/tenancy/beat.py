"""Tenancy's periodic tasks for celery beat (merged into CELERY_BEAT_SCHEDULE in settings)."""

BEAT_SCHEDULE = {
    "tenancy.rollup_usage": {"task": "tenancy.rollup_usage", "schedule": 300.0},
}
