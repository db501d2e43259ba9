"""python manage.py serve [--host H] [--port P]

Runs the whole single-node appliance in the foreground: applies migrations, then the web server (console, admin
API, OpenAI API under /v1/, /metrics), the node agent (which starts the engine replicas), the telemetry sampler,
a Celery worker and Celery beat. Ctrl-C stops everything. On each node of a fleet it runs the same processes, named by
NODE_NAME and reached at NODE_ADDRESS, against the shared DATABASE_URL, REDIS_URL and ARTIFACT_STORE_URL
(docs/fleet.md).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from appliance.celery import ensure_broker_folders
from appliance.gateway.supervisor import Child, Supervisor, python_argv

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def appliance_children(host: str, port: int, agent: bool = True, celery: bool = True,
                       log_level: str = "warning") -> list[Child]:
    """The processes of a single-node appliance, in start order."""
    env = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "appliance.settings")}
    children = [Child("web", python_argv("-m", "uvicorn", "appliance.asgi:application", "--host", host,
                                          "--port", str(port), "--log-level", log_level, "--no-access-log",
                                          "--timeout-graceful-shutdown", "5"), critical=True, env=env)]
    if agent:
        children.append(Child("node-agent", python_argv(MANAGE, "run_agent"), env=env))
        # Telemetry (console/telemetry helper): occupancy + engine time series for the console's charts.
        children.append(Child("telemetry", python_argv(MANAGE, "run_telemetry"), env=env))
    if celery:
        ensure_broker_folders()
        children.append(Child("celery-worker", python_argv("-m", "celery", "-A", "appliance", "worker",
                                                           "--loglevel", log_level, "--concurrency", "1"),
                              env=env))
        children.append(Child("celery-beat", python_argv("-m", "celery", "-A", "appliance", "beat",
                                                         "--loglevel", log_level,
                                                         "--schedule", str(Path(settings.APPLIANCE_HOME) / "celerybeat-schedule")),
                              env=env))
    return children


def metrics_token_line() -> str:
    """Where the /metrics scrape token comes from, and the token (docs/metrics.md)."""
    source = ("APPLIANCE_METRICS_TOKEN" if os.environ.get("APPLIANCE_METRICS_TOKEN")
              else f"generated, kept in {settings.SECRETS_FILE}")
    return f"Metrics scrape token ({source}): {settings.METRICS_TOKEN}  (Authorization: Bearer <token> on /metrics)"


class Command(BaseCommand):
    help = "Run the whole single-node appliance in the foreground (web, node agent, Celery worker and beat)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-agent", action="store_true", help="Do not run the node agent (no engines)")
        parser.add_argument("--no-celery", action="store_true", help="Do not run a Celery worker and beat")
        parser.add_argument("--log-level", default="warning", help="of uvicorn and Celery (debug, info, warning)")

    def handle(self, *args, **opts) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        Path(settings.APPLIANCE_HOME).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        children = appliance_children(opts["host"], opts["port"], agent=not opts["no_agent"],
                                      celery=not opts["no_celery"], log_level=opts["log_level"])
        self.stdout.write(f"Serving on http://{opts['host']}:{opts['port']}/  (OpenAI API under /v1/; Ctrl-C stops)")
        self.stdout.write(metrics_token_line())
        raise SystemExit(Supervisor(children, Path(settings.BASE_DIR)).run())
