"""Periodic lifecycle tasks for celery beat; settings.py merges this into CELERY_BEAT_SCHEDULE."""
BEAT_SCHEDULE = {
    "lifecycle-sweep-stale-compile-jobs": {
        "task": "appliance.lifecycle.tasks.sweep_stale_compile_jobs", "schedule": 10.0,
    },
    "lifecycle-autoscale": {"task": "appliance.lifecycle.tasks.autoscale_deployments", "schedule": 5.0},
    "lifecycle-place": {"task": "appliance.lifecycle.tasks.place_deployments", "schedule": 10.0},
}
