"""ASGI entry point: the console, the admin API and the OpenAI-compatible gateway."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
application = get_asgi_application()
