"""ASGI entry point: the console, the admin API and the OpenAI-compatible gateway.

Django's handler, except that the gateway's hot endpoints skip the middleware chain (appliance/gateway/asgi.py).
Static files (console and Django admin assets) are served by Django itself unless APPLIANCE_SERVE_STATIC=0, for
deployments where nginx serves STATIC_ROOT instead.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

from appliance.gateway.asgi import get_application  # noqa: E402

application = get_application()

if os.environ.get("APPLIANCE_SERVE_STATIC", "1").lower() not in {"0", "false", "no", "off"}:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
