"""python manage.py register_node --device neuron   (first boot on the AMI: ami/scripts/firstboot.sh)

Finds this machine's instance type (EC2 IMDSv2; APPLIANCE_IMDS_URL overrides the address), the Neuron driver for the
running kernel and neuron-ls's chips and NeuronCores, and records them on the Node row. What it cannot find (no
driver, neuron-ls failing, not on EC2) is recorded and printed, not raised: --strict makes it the exit status.
"""
from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.lifecycle.node_probe import register_this_node


class Command(BaseCommand):
    help = "Detect this node's instance type, driver and accelerator cores, and record them on its Node row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", default=settings.NODE_NAME, help="this node's name (default: NODE_NAME)")
        parser.add_argument("--device", choices=["cpu", "cuda", "neuron"], default="neuron")
        parser.add_argument("--address", default=settings.NODE_ADDRESS,
                            help="where other nodes reach this node's replicas (default: NODE_ADDRESS)")
        parser.add_argument("--imds-timeout", type=float, default=2.0, help="seconds per metadata request")
        parser.add_argument("--json", action="store_true", help="print the findings as JSON")
        parser.add_argument("--strict", action="store_true", help="exit non-zero when anything was not found")

    def handle(self, *args, **opts) -> None:
        node, found = register_this_node(opts["node"], opts["device"], opts["address"], opts["imds_timeout"])
        if opts["json"]:
            self.stdout.write(json.dumps(found, indent=2, sort_keys=True))
        else:
            self.stdout.write(f"node {node.name}: {node.device}, instance type {node.instance_type or 'unknown'}, "
                              f"{node.chips} chips, {node.cores} cores")
            for problem in found["problems"]:
                self.stderr.write(f"  problem: {problem}")
        if opts["strict"] and found["problems"]:
            raise CommandError(f"{len(found['problems'])} problem(s) on {node.name}: " + "; ".join(found["problems"]))
