"""Sample this node's occupancy and its engines into the time series until interrupted.

Occupancy: neuron-monitor's stream on Neuron, NVML / the replica processes elsewhere. Engines: each ready replica's
/metrics every interval (EngineSample). Samples older than --retention are pruned once an hour.
"""
import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from appliance.catalog.models import Device, Node
from appliance.telemetry import engine_sampler, services
from appliance.telemetry.neuron_monitor import NeuronMonitorSampler

log = logging.getLogger("appliance.telemetry")
PRUNE_EVERY_S = 3600.0


class Command(BaseCommand):
    help = "Record NeuronCore / GPU / process occupancy and engine metrics for this node's replicas."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between samples")
        parser.add_argument("--node", default=settings.NODE_NAME)
        parser.add_argument("--once", action="store_true", help="Take one sample of each kind and exit")
        parser.add_argument("--retention", type=float, default=7 * 24 * 3600.0,
                            help="Seconds samples are kept (default: a week)")

    def handle(self, *args, interval: float, node: str, once: bool, retention: float, **options) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per scrape in `serve`'s output
        node_row, _ = Node.objects.get_or_create(name=node)
        monitor = None
        if node_row.device == Device.NEURON and not once:
            monitor = NeuronMonitorSampler(
                on_report=lambda report: services.record_neuron_report(node_row, report), period_s=interval
            ).start()
        self.stdout.write(f"telemetry on {node_row.name}: every {interval:g} s", ending="\n")
        last_prune = 0.0
        try:
            while True:
                close_old_connections()
                try:
                    if node_row.device != Device.NEURON:
                        services.sample_host(node_row)
                    engine_sampler.sample_engines(node_row)
                    if time.monotonic() - last_prune > PRUNE_EVERY_S:
                        services.prune(retention)
                        engine_sampler.prune(retention)
                        last_prune = time.monotonic()
                except Exception:  # a bad sample must not stop the series; the next interval tries again
                    log.exception("telemetry sample failed")
                    if once:
                        raise
                if once:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            if monitor is not None:
                monitor.stop()
