"""ASGI entry point: the console, the admin API and the OpenAI-compatible gateway.

Django's handler, except that the gateway's hot endpoints skip the middleware chain (appliance/gateway/asgi.py).
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

from appliance.gateway.asgi import get_application  # noqa: E402

application = get_application()
