"""python manage.py neuron_plan MODEL [--instance inf2.xlarge] [--options JSON] [--json]

Prints the plan of a neuron compile (appliance/runtime/neuron/plan.py) for a registered model's latest version or a
checkpoint directory: TP degree, buckets, KV blocks, device and host memory, graphs, a compile-time estimate, and
the problems that refuse it. Exits 1 when the plan refuses, 2 when the input is wrong.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.lifecycle.compile_runner import node_instance_type
from appliance.lifecycle.plans import PlanInputError, plan_model
from appliance.runtime.neuron.instances import INSTANCES


class Command(BaseCommand):
    help = "Plan a neuron compile: TP, buckets, memory, graphs and compile time; refuse what will not fit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="a registered model's name, or a checkpoint directory (config.json)")
        parser.add_argument("--instance", default="",
                            help="instance type, e.g. inf2.xlarge (default: this node's, from its Node row)")
        parser.add_argument("--options", default="{}",
                            help='neuron compile options as JSON, e.g. \'{"max_model_len": 4096, "tp_degree": 2}\'')
        parser.add_argument("--json", action="store_true", help="print the plan as JSON")

    def handle(self, *args, **o) -> None:
        try:
            options = json.loads(o["options"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--options is not JSON ({exc}); write e.g. '{{\"tp_degree\": 2}}'", returncode=2)
        if not isinstance(options, dict):
            raise CommandError("--options must be a JSON object of neuron compile options", returncode=2)
        try:
            instance = o["instance"] or node_instance_type()
            plan = plan_model(o["model"], instance if o["instance"] or instance in INSTANCES else None, options)
        except (PlanInputError, ValueError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stdout.write(json.dumps(plan.to_dict(), indent=2) if o["json"] else plan.describe())
        if not plan.fits:
            raise CommandError(f"the plan refuses this compile: {plan.reason}", returncode=1)
