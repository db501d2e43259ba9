"""Sample this node's occupancy into the time series: neuron-monitor's stream on Neuron, NVML / processes elsewhere."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from appliance.catalog.models import Device, Node
from appliance.telemetry import services
from appliance.telemetry.neuron_monitor import NeuronMonitorSampler


class Command(BaseCommand):
    help = "Record NeuronCore / GPU / process occupancy for this node's replicas until interrupted."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between samples")
        parser.add_argument("--node", default=settings.NODE_NAME)
        parser.add_argument("--once", action="store_true", help="Take one CPU/CUDA sample and exit")

    def handle(self, *args, interval: float, node: str, once: bool, **options) -> None:
        node_row, _ = Node.objects.get_or_create(name=node)
        if node_row.device == Device.NEURON:
            sampler = NeuronMonitorSampler(
                on_report=lambda report: services.record_neuron_report(node_row, report), period_s=interval
            ).start()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                sampler.stop()
            return
        while True:
            services.sample_host(node_row)
            if once:
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return
