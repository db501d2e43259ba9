"""A benchmark run against a CPU deployment through the live gateway, by the CLI: one row per level, every figure
present and consistent, the usage billed to the benchmark tenant, and its recommendation applied."""
import json
import time

import pytest
from django.core.management import call_command

from tests.capacity.conftest import PRICE_USD
from tests.gateway.conftest import committed

pytestmark = pytest.mark.django_db
CONTRACT = ["concurrency", "requests", "errors", "ttft_p50", "ttft_p90", "ttft_p99", "itl_p50", "itl_p99",
            "e2e_p50", "output_tokens", "output_tok_s", "goodput", "cost_per_million_output_tokens"]
REQUESTS, OUTPUT_TOKENS = 4, 32  # per level; the qa preset: 64 in, 32 out


@pytest.fixture(scope="module")
def bench(live, django_db_blocker, tmp_path_factory):
    """`manage.py bench` at concurrency 1 and 2 (SLOs loose enough for a shared 2-core machine)."""
    out = tmp_path_factory.mktemp("bench") / "out.json"
    with django_db_blocker.unblock():
        committed(call_command, "bench", live.deployment, "--concurrency", "1,2", "--requests", str(REQUESTS),
                  "--profile", "qa", "--ttft-slo", "30", "--itl-slo", "5", "--gateway-url", live.gateway.url,
                  "--json", str(out))
    return json.loads(out.read_text())


def test_each_level_has_every_figure_and_they_agree(bench):
    levels = bench["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 2]
    for lv in levels:
        assert all(lv[key] is not None for key in CONTRACT), lv
        assert lv["requests"] == REQUESTS and lv["errors"] == 0
        assert 0 <= lv["goodput"] <= lv["requests"]
        for name in ("ttft", "itl", "e2e"):
            assert 0 < lv[f"{name}_p50"] <= lv[f"{name}_p90"] <= lv[f"{name}_p99"]
        assert lv["ttft_p50"] < lv["e2e_p50"]
        assert lv["output_tokens"] == REQUESTS * OUTPUT_TOKENS  # ignore_eos: each request its full length
        assert lv["output_tok_s"] == pytest.approx(lv["output_tokens"] / lv["duration_s"], rel=0.05)
        assert 0 <= lv["kv_use"] <= 1 and lv["core_utilization"] > 0
    # KV use is sampled 0.02 s into a level and then every 0.1 s, while the tiny model finishes a level in about a
    # tenth: a level always has a reading, though it may see no block held (a sample of 0 is a real reading)
    assert levels[0]["mean_batch_size"] == pytest.approx(1.0)  # one request at a time: batches of one
    assert levels[1]["mean_batch_size"] > 1.0


def test_tokens_per_second_matches_the_tokens_the_gateway_recorded(bench):
    from appliance.capacity.models import BenchmarkRun
    from appliance.tenancy.models import Tenant, UsageRecord

    run = BenchmarkRun.objects.get(pk=bench["run"])
    rows = UsageRecord.objects.filter(api_key=run.api_key)
    counted = sum(lv["output_tokens"] for lv in bench["levels"])
    # The gateway writes usage rows in 50 ms batches after the last token (appliance/gateway/usage.py), so the last
    # level's rows may land just after the command returns: wait for them, a few seconds at most.
    deadline = time.monotonic() + 10
    while True:
        recorded = sum(rows.values_list("completion_tokens", flat=True)) - OUTPUT_TOKENS  # less the warm-up request
        if recorded >= counted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert recorded == pytest.approx(counted, rel=0.05)
    for lv in bench["levels"]:
        assert lv["output_tok_s"] * lv["duration_s"] == pytest.approx(lv["output_tokens"], rel=0.05)
    assert {r.tenant.kind for r in rows} == {Tenant.Kind.BENCHMARK}  # not billed to a customer tenant
    assert run.api_key.revoked_at is not None  # the run's key dies with it


def test_cost_per_million_tokens_follows_the_price_and_the_core_share(bench):
    assert bench["config"]["hourly_cost_usd"] == pytest.approx(PRICE_USD / 2)  # 1 of the node's 2 cores
    for lv in bench["levels"]:
        expected = PRICE_USD / 2 / (lv["output_tok_s"] * 3600) * 1e6
        assert lv["cost_per_million_output_tokens"] == pytest.approx(expected)


def test_recommendation_is_the_cheapest_level_and_applies_as_the_autoscaling_target(bench, live, django_db_blocker,
                                                                                    staff_api):
    from appliance.capacity.models import BenchmarkRun
    from appliance.capacity.runner import run_benchmark
    from appliance.catalog.models import Deployment

    rec = bench["recommendation"]
    cheapest = min(bench["levels"], key=lambda lv: lv["cost_per_million_output_tokens"])
    assert rec["meets_slo"] and rec["concurrency"] == cheapest["concurrency"] and rec["replicas"] == 1
    assert rec["cost_per_million_output_tokens"] == pytest.approx(cheapest["cost_per_million_output_tokens"])
    with django_db_blocker.unblock():
        committed(call_command, "bench_apply", str(bench["run"]))
        dep = committed(Deployment.objects.get, name=live.deployment)
        assert dep.target_outstanding_per_replica == rec["concurrency_per_replica"]
        assert committed(run_benchmark, bench["run"]) == "skipped"  # a redelivered task leaves a finished run alone
        assert committed(BenchmarkRun.objects.get, pk=bench["run"]).status == BenchmarkRun.Status.SUCCEEDED


def test_admin_api_refuses_bad_runs_and_applying_without_a_recommendation(live, staff_api):
    bad = staff_api.post("/api/capacity/benchmark-runs/", {"deployment": live.deployment, "concurrency_levels": [0],
                                                            "requests_per_level": 2}, format="json")
    assert bad.status_code == 400 and "positive" in bad.json()["detail"]
    unknown = staff_api.post("/api/capacity/benchmark-runs/", {"deployment": "nope", "concurrency_levels": [1],
                                                               "requests_per_level": 2}, format="json")
    assert unknown.status_code == 400
    from appliance.capacity.services import create_run

    queued = create_run(live.deployment, concurrency=[1], requests=1)
    refused = staff_api.post(f"/api/capacity/benchmark-runs/{queued.pk}/apply/")
    assert refused.status_code == 400 and "no recommendation" in refused.json()["detail"]
    price = staff_api.post("/api/capacity/prices/", {"instance_type": "inf2.test", "hourly_usd": 0.5},
                           format="json")
    assert price.status_code == 201
