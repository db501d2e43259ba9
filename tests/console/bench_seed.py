"""Two finished benchmark runs with realistic results (shaped as appliance.capacity.runner writes them, figures of
the kind a CPU replica gives), for the benchmark pages' tests: no benchmark is run."""
from __future__ import annotations

from django.utils import timezone

from appliance.capacity.models import BenchmarkRun
from appliance.capacity.recommend import cost_per_million, hourly_cost, recommend


def level(concurrency: int, ttft: float, itl: float, tok_s: float, goodput: int, requests: int = 16) -> dict:
    out_tokens = requests * 32
    duration = out_tokens / tok_s
    e2e = ttft + 31 * itl
    return {
        "concurrency": concurrency, "arrival": "closed", "requests": requests, "succeeded": requests, "errors": 0,
        "errors_rate_limited": 0, "errors_failed": 0, "stopped_early": False, "duration_s": round(duration, 3),
        "ttft_p50": ttft, "ttft_p90": round(ttft * 1.6, 4), "ttft_p99": round(ttft * 2.3, 4),
        "itl_p50": itl, "itl_p90": round(itl * 1.4, 5), "itl_p99": round(itl * 2.1, 5),
        "e2e_p50": round(e2e, 4), "e2e_p90": round(e2e * 1.3, 4), "e2e_p99": round(e2e * 1.7, 4),
        "input_tokens": requests * 64, "output_tokens": out_tokens, "output_tok_s": tok_s,
        "requests_per_s": round(requests / duration, 3), "mean_in_flight": concurrency * 0.95,
        "goodput": goodput, "goodput_rps": round(goodput / duration, 3), "mean_batch_size": concurrency * 0.9,
        "kv_use": 0.02 * concurrency, "core_utilization": None,
    }


def results(run_id: int, deployment: str, replicas: int, cores: int, levels: list[dict]) -> dict:
    hourly = hourly_cost(0.7582, replicas, cores, 2)
    for lv in levels:
        lv["cost_per_million_output_tokens"] = cost_per_million(hourly, lv["output_tok_s"])
    config = {"deployment": deployment, "replicas": replicas, "cores_per_replica": cores, "node_cores": 2,
              "instance_type": "inf2.xlarge", "hourly_usd": 0.7582, "hourly_cost_usd": hourly, "profile": "qa",
              "slo": {"ttft_s": 2.0, "itl_s": 0.2}}
    out = {"run": run_id, "config": config, "levels": levels}
    out["recommendation"] = recommend([out])
    return out


def seed_runs(deployment) -> tuple[BenchmarkRun, BenchmarkRun]:
    """Run A: 2 replicas x 1 core at concurrency 1, 4, 16; run B: 1 replica x 2 cores at 1, 4, 16, 32."""
    now = timezone.now()
    runs = []
    for replicas, cores, levels in (
        (2, 1, [level(1, 0.08, 0.021, 44.0, 16), level(4, 0.19, 0.034, 112.5, 16), level(16, 2.9, 0.09, 171.0, 5)]),
        (1, 2, [level(1, 0.06, 0.017, 55.0, 16), level(4, 0.15, 0.028, 131.0, 16), level(16, 1.4, 0.07, 205.0, 15),
                level(32, 3.8, 0.13, 221.0, 2)]),
    ):
        run = BenchmarkRun.objects.create(deployment=deployment, concurrency_levels=[lv["concurrency"] for lv in levels],
                                          requests_per_level=16, status=BenchmarkRun.Status.SUCCEEDED, percent=100,
                                          started_at=now, finished_at=now)
        run.results = results(run.pk, deployment.name, replicas, cores, levels)
        run.save(update_fields=["results"])
        runs.append(run)
    return runs[0], runs[1]
