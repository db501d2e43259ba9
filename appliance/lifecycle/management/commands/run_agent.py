"""python manage.py run_agent — the node agent: keeps this node's engine replicas in line with the database."""
from django.conf import settings
from django.core.management.base import BaseCommand

from appliance.lifecycle.agent.node_agent import AgentOptions, NodeAgent
from appliance.lifecycle.conf import setting


class Command(BaseCommand):
    help = "Run the node agent in the foreground: start, stop and restart this node's engine replicas."

    def add_arguments(self, parser):
        parser.add_argument("--node", default=settings.NODE_NAME, help="this node's name (default: NODE_NAME)")
        parser.add_argument("--address", default=settings.NODE_ADDRESS,
                            help="where other nodes reach this node's replicas (default: NODE_ADDRESS)")
        parser.add_argument("--device", choices=["cpu", "cuda", "neuron"], default="cpu")
        parser.add_argument("--cores", type=int, default=None, help="override the detected core/slot count")
        parser.add_argument("--tick", type=float, default=None, help="seconds between reconcile passes")
        parser.add_argument("--no-autoscale", action="store_true", help="leave autoscaling to celery beat")
        parser.add_argument("--no-placement", action="store_true", help="leave placement to celery beat")
        parser.add_argument("--server-module", default="appliance.runtime.server",
                            help="python -m module that serves one replica (prints READY <url>)")

    def handle(self, *args, **opts):
        from appliance.lifecycle.kubernetes import entrypoint as kubernetes_backend  # APPLIANCE_REPLICA_BACKEND

        if kubernetes_backend.selected():  # replicas as pods (deploy/kubernetes/), not processes on this machine
            return kubernetes_backend.run_controller(opts, self.stdout)
        agent = NodeAgent(AgentOptions(
            node_name=opts["node"], address=opts["address"], device=opts["device"], cores=opts["cores"],
            tick_s=opts["tick"] if opts["tick"] is not None else setting("AGENT_TICK_S"),
            autoscale=not opts["no_autoscale"], place=not opts["no_placement"], server_module=opts["server_module"],
        ))
        self.stdout.write(f"node agent on {agent.node.name} at {agent.node.address}: {agent.node.device}, "
                          f"{agent.node.cores} cores")
        self.stdout.flush()
        agent.run()
