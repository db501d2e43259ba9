"""The Inferentia serving appliance: control plane (Django), engine (appliance.runtime), jobs (Celery)."""
from .celery import app as celery_app

__all__ = ["celery_app"]
