"""python manage.py deploy NAME — create or update the deployment of a registered model, compile, and place it."""
from django.core.management.base import BaseCommand, CommandError

from appliance.lifecycle.services import MODES, LifecycleError, deploy


class Command(BaseCommand):
    help = "Deploy the latest version of a registered model (compiles it, or reuses a cached artifact)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="a registered model's name; the deployment takes the same name")
        parser.add_argument("--device", choices=["cpu", "cuda", "neuron"], default="cpu")
        parser.add_argument("--replicas", type=int, default=None, help="desired replicas now")
        parser.add_argument("--min-replicas", type=int, default=None, help="0 allows scale to zero")
        parser.add_argument("--max-replicas", type=int, default=None)
        parser.add_argument("--idle-timeout", type=int, default=None, help="seconds idle before scaling in")
        parser.add_argument("--mode", choices=MODES, default=None)
        parser.add_argument("--cores-per-replica", type=int, default=None)
        parser.add_argument("--pool", default=None, help="shared pool name (created on this node if new)")
        parser.add_argument("--dtype", default=None, help="artifact dtype (default: the version's)")
        parser.add_argument("--kv-layout", choices=["block", "contiguous"], default="",
                            help="neuron KV cache layout (default: block)")
        parser.add_argument("--no-compile", action="store_true", help="serve the registered checkpoint as is")

    def handle(self, *args, **o):
        try:
            result = deploy(
                o["name"], device=o["device"], replicas=o["replicas"], min_replicas=o["min_replicas"],
                max_replicas=o["max_replicas"], idle_timeout=o["idle_timeout"], mode=o["mode"],
                cores_per_replica=o["cores_per_replica"], pool=o["pool"], compile=not o["no_compile"],
                dtype=o["dtype"], kv_layout=o["kv_layout"],
            )
        except LifecycleError as exc:
            raise CommandError(str(exc)) from exc
        dep = result.deployment
        if result.compile_job is not None:
            job = result.compile_job
            state = "cache hit" if job.cache_hit else job.status
            self.stdout.write(f"compile job #{job.pk}: {state}")
        self.stdout.write(
            f"deployment {dep.name}: {dep.mode}, {dep.device}, replicas {dep.min_replicas}..{dep.max_replicas} "
            f"(desired {dep.desired_replicas}), {dep.cores_per_replica} core(s) each, "
            f"idle timeout {dep.idle_timeout_s}s"
        )
        self.stdout.write(f"status: {dep.status} — {dep.status_message}")
