"""python manage.py bench DEPLOYMENT --concurrency 1,4 --requests N --profile qa --json OUT.json"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from appliance.capacity.models import BenchmarkRun
from appliance.capacity.report import contract_json, table
from appliance.capacity.services import CapacityError, create_run


def _list(text: str | None, kind):
    if not text:
        return []
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"not a comma-separated list of numbers: {text!r}") from None


class Command(BaseCommand):
    help = ("Load-test a deployment through the gateway at each level and print TTFT, ITL, throughput, goodput and "
            "cost per level, with a recommendation. Runs the benchmark job here to its end (--enqueue: in Celery, "
            "waiting for it).")

    def add_arguments(self, parser):
        parser.add_argument("deployment")
        parser.add_argument("--concurrency", help="closed-loop levels, e.g. 1,4,16")
        parser.add_argument("--rate", help="open-loop levels in requests/s, e.g. 2,8")
        parser.add_argument("--arrival", choices=["poisson", "gamma"], default="poisson")
        parser.add_argument("--burstiness", type=float, default=None, help="gamma shape (<1 burstier); default 0.5 "
                                                                           "for gamma, 1 for poisson")
        parser.add_argument("--requests", type=int, help="requests per level")
        parser.add_argument("--duration", type=float, help="seconds per level (instead of --requests)")
        parser.add_argument("--profile", default="qa", choices=[c for c, _ in BenchmarkRun.Profile.choices])
        parser.add_argument("--prompts", default="", help="JSONL of prompts (with --profile jsonl)")
        parser.add_argument("--input-tokens", type=int)
        parser.add_argument("--output-tokens", type=int)
        parser.add_argument("--ttft-slo", type=float, default=2.0, help="seconds (default 2)")
        parser.add_argument("--itl-slo", type=float, default=0.2, help="seconds (default 0.2)")
        parser.add_argument("--max-error-rate", type=float, default=0.5)
        parser.add_argument("--instance-type", default="", help="price as this type (default: the node's)")
        parser.add_argument("--gateway-url", default="", help="default: CAPACITY_GATEWAY_URL")
        parser.add_argument("--json", dest="json_path", help="write the results here")
        parser.add_argument("--enqueue", action="store_true", help="run in a Celery worker and wait")

    def handle(self, *args, **o):
        burstiness = o["burstiness"] if o["burstiness"] is not None else (0.5 if o["arrival"] == "gamma" else 1.0)
        if o["arrival"] == "poisson" and o["burstiness"] not in (None, 1.0):
            raise CommandError("--burstiness applies to --arrival gamma (poisson is burstiness 1)")
        try:
            run = create_run(
                o["deployment"], concurrency=_list(o["concurrency"], int), rates=_list(o["rate"], float),
                profile=o["profile"], requests=o["requests"], duration_s=o["duration"], burstiness=burstiness,
                prompts_path=o["prompts"], input_tokens=o["input_tokens"], output_tokens=o["output_tokens"],
                ttft_slo_s=o["ttft_slo"], itl_slo_s=o["itl_slo"], max_error_rate=o["max_error_rate"],
                instance_type=o["instance_type"], gateway_url=o["gateway_url"])
        except CapacityError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"benchmark run {run.pk} against {run.deployment.name}")
        if o["enqueue"]:
            run = self._wait(run)
        else:
            from appliance.capacity.runner import run_benchmark

            run_benchmark(run.pk)
            run.refresh_from_db()
        if run.status != BenchmarkRun.Status.SUCCEEDED:
            raise CommandError(f"benchmark run {run.pk} {run.status}: {run.error}\n{run.log}")
        self.stdout.write(table(run.results))
        if o["json_path"]:
            with open(o["json_path"], "w") as f:
                json.dump(contract_json(run.results), f, indent=2)

    def _wait(self, run: BenchmarkRun) -> BenchmarkRun:
        import time

        from appliance.capacity.tasks import run_benchmark

        result = run_benchmark.delay(run.pk)
        BenchmarkRun.objects.filter(pk=run.pk).update(celery_task_id=result.id)
        stage = None
        while not run.is_finished:
            time.sleep(1.0)
            run.refresh_from_db()
            if run.stage != stage:
                stage = run.stage
                self.stderr.write(f"  {run.percent:3d}% {stage}")
        return run
