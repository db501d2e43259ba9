"""ASGI entry point: the console, the admin API and the OpenAI-compatible gateway.

Static files (console and Django admin assets) are served by Django itself unless APPLIANCE_SERVE_STATIC=0, for
deployments where nginx serves STATIC_ROOT instead.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
application = get_asgi_application()

if os.environ.get("APPLIANCE_SERVE_STATIC", "1").lower() not in {"0", "false", "no", "off"}:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
