"""python manage.py drain_node NAME [--undo] [--wait S] — move a node's replicas elsewhere, place nothing new there."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.catalog.models import Node
from appliance.lifecycle import placement
from appliance.lifecycle.node_state import NodeStateError, drain_progress, set_draining


class Command(BaseCommand):
    help = ("Drain a node: each of its replicas is started on another node, then stopped here; nothing new is placed "
            "on it. --undo makes it ready again.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the node's name (its NODE_NAME)")
        parser.add_argument("--undo", action="store_true", help="undrain: the node takes new replicas again")
        parser.add_argument("--wait", type=float, default=0.0,
                            help="seconds to wait for the node to hold no replica (0: do not wait)")

    def handle(self, *args, **opts) -> None:
        try:
            node = set_draining(opts["name"], not opts["undo"])
        except Node.DoesNotExist:
            names = ", ".join(Node.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"no node called {opts['name']!r} (nodes: {names})") from None
        except NodeStateError as exc:
            raise CommandError(str(exc)) from exc
        placement.place_all()
        left = drain_progress(node)["replicas_left"]
        self.stdout.write(f"node {node.name}: {node.state}, {left} replica(s) on it")
        if opts["undo"] or opts["wait"] <= 0:
            return
        deadline = time.monotonic() + opts["wait"]
        while left and time.monotonic() < deadline:
            time.sleep(1.0)
            left = drain_progress(node)["replicas_left"]
        if left:
            raise CommandError(f"node {node.name} still holds {left} replica(s) after {opts['wait']:.0f}s: their "
                               "replacements are not ready yet, or no other node has free cores (see the deployments' "
                               "status)")
        self.stdout.write(f"node {node.name} is drained")
