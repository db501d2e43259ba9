"""python manage.py bench_apply RUN_ID: the run's recommendation becomes the deployment's autoscaling target."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from appliance.capacity.models import BenchmarkRun
from appliance.capacity.services import CapacityError, apply_recommendation


class Command(BaseCommand):
    help = ("Apply a benchmark run's recommendation: the deployment's target_outstanding_per_replica becomes the "
            "recommended concurrency per replica, and max_replicas at least the recommended replica count.")

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id: int, **o):
        run = BenchmarkRun.objects.filter(pk=run_id).select_related("deployment").first()
        if run is None:
            raise CommandError(f"no benchmark run {run_id}")
        try:
            dep = apply_recommendation(run)
        except CapacityError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{dep.name}: autoscaling target {dep.target_outstanding_per_replica} outstanding requests "
                          f"per replica, max_replicas {dep.max_replicas}")
