"""The Celery application. Tasks live in each app's tasks.py and take a database row's id."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

app = Celery("appliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    """The laptop's filesystem broker needs its folders before anyone sends or consumes (no-op with Redis)."""
    from django.conf import settings

    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        path = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get(key)
        if path:
            os.makedirs(path, exist_ok=True)
