"""The recommendation and the cost rule, on two synthetic-but-realistic runs of two configurations of one model on
an inf2.xlarge ($0.7582/h, 2 NeuronCores): A, 2 replicas at TP 1 (1 core each); B, 1 replica at TP 2 (2 cores).
The figures follow what TP does: B has the lower latency per request, A the higher throughput at high concurrency."""
import math

import pytest

from appliance.capacity.loadgen import SLO, LevelRun, LevelSpec, RequestResult, percentile, summarize
from appliance.capacity.recommend import cost_per_million, hourly_cost, level_meets, recommend

PRICE = 0.7582


def level(concurrency, tok_s, ttft_p90, itl_p90, goodput, requests=64, errors_failed=0, rate_limited=0):
    cost = cost_per_million(hourly_cost(PRICE, 1, 2, 2), tok_s)  # either configuration occupies the whole instance
    return {"concurrency": concurrency, "requests": requests, "succeeded": requests - errors_failed - rate_limited,
            "errors": errors_failed + rate_limited, "errors_failed": errors_failed,
            "errors_rate_limited": rate_limited, "goodput": goodput, "output_tok_s": tok_s, "ttft_p90": ttft_p90,
            "itl_p90": itl_p90, "e2e_p50": 3.0, "cost_per_million_output_tokens": cost}


def run(run_id, replicas, cores, levels):
    return {"run": run_id, "config": {"deployment": "llama-8b", "replicas": replicas, "cores_per_replica": cores,
                                      "slo": {"ttft_s": 1.0, "itl_s": 0.2}}, "levels": levels}


TP1_X2 = run(1, 2, 1, [level(4, 95.0, 0.40, 0.045, 64), level(16, 310.0, 0.75, 0.090, 63),
                       level(64, 520.0, 2.80, 0.260, 12)])
TP2_X1 = run(2, 1, 2, [level(4, 120.0, 0.22, 0.030, 64), level(16, 290.0, 0.55, 0.070, 64),
                       level(64, 400.0, 1.90, 0.210, 20)])


def test_cost_rule_charges_a_replica_its_share_of_the_instance():
    assert hourly_cost(PRICE, 1, 1, 2) == pytest.approx(PRICE / 2)
    assert hourly_cost(PRICE, 2, 1, 2) == pytest.approx(PRICE)
    assert hourly_cost(12.9813, 3, 8, 24) == pytest.approx(12.9813)
    assert hourly_cost(None, 1, 1, 2) is None
    # $0.7582/h at 100 tok/s: 360,000 tokens an hour -> $2.106 per million
    assert cost_per_million(PRICE, 100.0) == pytest.approx(PRICE / 0.36)
    assert cost_per_million(PRICE, 0.0) is None


def test_recommendation_picks_the_cheapest_level_meeting_the_slo_across_configurations():
    rec = recommend([TP1_X2, TP2_X1])
    # At 64 concurrent neither meets the SLO; of the levels that do, 2 x TP1 at 16 has the highest tok/s for the
    # same instance, so the lowest cost per million tokens.
    assert rec["meets_slo"]
    assert (rec["run"], rec["concurrency"], rec["replicas"]) == (1, 16, 2)
    assert rec["concurrency_per_replica"] == 8
    assert rec["cost_per_million_output_tokens"] == pytest.approx(PRICE / (310.0 * 3600) * 1e6)
    assert "lowest cost per million" in rec["reason"]
    missed = {(c["run"], c["concurrency"]) for c in rec["candidates"] if not c["meets_slo"]}
    assert missed == {(1, 64), (2, 64)}


def test_a_tighter_ttft_slo_moves_the_recommendation_to_tensor_parallel():
    # With a 0.6 s TTFT SLO, 2 x TP1 at 16 (p90 0.75 s, so ~half of requests late) no longer qualifies: B at 16 does.
    tight_a = run(1, 2, 1, [level(4, 95.0, 0.40, 0.045, 64), level(16, 310.0, 0.75, 0.090, 30)])
    tight_b = run(2, 1, 2, [level(4, 120.0, 0.22, 0.030, 64), level(16, 290.0, 0.55, 0.070, 62)])
    rec = recommend([tight_a, tight_b])
    assert (rec["run"], rec["concurrency"], rec["replicas"], rec["concurrency_per_replica"]) == (2, 16, 1, 16)


def test_failed_or_rate_limited_levels_never_qualify():
    assert level_meets(level(4, 100.0, 0.1, 0.01, 63, errors_failed=1)) == (False, "1 request(s) failed")
    assert not level_meets(level(4, 100.0, 0.1, 0.01, 60, rate_limited=4))[0]
    assert not recommend([run(1, 1, 1, [level(4, 100.0, 5.0, 1.0, 3)])])["meets_slo"]


def test_peak_concurrency_sizes_the_replica_count():
    rec = recommend([TP1_X2, TP2_X1], peak_concurrency=50)
    assert rec["concurrency_per_replica"] == 8 and rec["replicas"] == math.ceil(50 / 8)


def test_level_summary_percentiles_goodput_and_throughput():
    results = [RequestResult(ok=True, status=200, ttft_s=0.1 * i, itl_s=[0.01 * i] * 9, e2e_s=0.1 * i + 0.09 * i,
                             output_tokens=10, input_tokens=20) for i in range(1, 11)]
    results.append(RequestResult(status=429, error_kind="rate_limited", e2e_s=0.01))
    figures = summarize(LevelRun(LevelSpec(concurrency=4, requests=11), results, 2.0, False), SLO(0.45, 0.045))
    assert figures["requests"] == 11 and figures["errors"] == 1 and figures["errors_rate_limited"] == 1
    assert figures["output_tokens"] == 100 and figures["output_tok_s"] == pytest.approx(50.0)
    assert figures["ttft_p50"] == pytest.approx(percentile([0.1 * i for i in range(1, 11)], 0.5))
    assert figures["ttft_p50"] <= figures["ttft_p90"] <= figures["ttft_p99"]
    # request i: TTFT 0.1*i, TPOT 0.01*i; requests 1..4 meet TTFT <= 0.45 and ITL <= 0.045
    assert figures["goodput"] == 4
