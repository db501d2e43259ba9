"""EngineMetrics: per-request histograms from RequestOutputs, engine gauges from stats snapshots, own registry."""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from appliance.runtime.metrics import EngineMetrics
from appliance.runtime.outputs import CompletionOutput, RequestMetrics, RequestOutput


@dataclass
class Stats:
    num_running: int = 3
    num_waiting: int = 2
    kv_blocks_used: int = 10
    kv_blocks_total: int = 40
    prefix_cache_queried_tokens: int = 100
    prefix_cache_hit_tokens: int = 32
    num_preemptions: int = 1
    steps: int = 7
    last_step_num_batched_tokens: int = 19
    last_step_num_seqs: int = 3
    step_time_total_s: float = 2.0
    forward_time_total_s: float = 1.5
    step_time_s: float = 0.02
    forward_time_s: float = 0.015


def samples(metrics: EngineMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: EngineMetrics, name: str, **labels: str) -> float:
    labels.setdefault("model", "m")
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def output(rid: str, times: list[float], finish: str | None, n_new: int = 1) -> RequestOutput:
    m = RequestMetrics(arrival_time=0.0, first_scheduled_time=0.25)
    m.first_token_time = times[0] if times else None
    m.inter_token_latencies = [b - a for a, b in zip(times, times[1:])]
    if finish:
        m.finished_time = times[-1]
    c = CompletionOutput(0, token_ids=list(range(len(times))), new_token_ids=list(range(n_new)), finish_reason=finish)
    return RequestOutput(rid, [1, 2, 3, 4], [c], m)


def test_request_latencies_are_observed_once_per_token_and_request():
    metrics = EngineMetrics("m")
    metrics.observe_output(output("a", [0.5], None))
    metrics.observe_output(output("a", [0.5, 0.6], None))
    metrics.observe_output(output("a", [0.5, 0.6, 0.8], "length"))
    assert value(metrics, "appliance_engine_request_ttft_seconds_count") == 1
    assert abs(value(metrics, "appliance_engine_request_ttft_seconds_sum") - 0.5) < 1e-9
    assert value(metrics, "appliance_engine_request_inter_token_seconds_count") == 2
    assert abs(value(metrics, "appliance_engine_request_inter_token_seconds_sum") - 0.3) < 1e-9
    assert value(metrics, "appliance_engine_request_queue_seconds_count") == 1
    assert abs(value(metrics, "appliance_engine_request_e2e_seconds_sum") - 0.8) < 1e-9
    assert value(metrics, "appliance_engine_requests_finished_total", finish_reason="length") == 1
    assert value(metrics, "appliance_engine_generation_tokens_total") == 3
    assert value(metrics, "appliance_engine_prompt_tokens_total") == 4


def test_abort_is_counted_with_its_reason():
    metrics = EngineMetrics("m")
    metrics.observe_output(output("a", [0.5], None))
    metrics.observe_abort("a")
    assert value(metrics, "appliance_engine_requests_finished_total", finish_reason="abort") == 1


def test_engine_gauges_and_counters_come_from_the_latest_stats():
    metrics = EngineMetrics("m", info={"device": "cpu"})
    metrics.observe_stats(Stats(), stepped=True)
    assert value(metrics, "appliance_engine_kv_blocks_used") == 10
    assert value(metrics, "appliance_engine_kv_blocks_total") == 40
    assert value(metrics, "appliance_engine_kv_cache_usage_ratio") == 0.25
    assert value(metrics, "appliance_engine_num_requests_running") == 3
    assert value(metrics, "appliance_engine_num_requests_waiting") == 2
    assert value(metrics, "appliance_engine_prefix_cache_hit_tokens_total") == 32
    assert value(metrics, "appliance_engine_preemptions_total") == 1
    assert value(metrics, "appliance_engine_step_overhead_seconds_total") == 0.5
    assert value(metrics, "appliance_engine_step_batched_tokens_count") == 1
    assert value(metrics, "appliance_engine_step_batched_tokens_sum") == 19
    assert value(metrics, "appliance_engine_info", device="cpu") == 1
    metrics.observe_stats(Stats(kv_blocks_used=0), stepped=False)
    assert value(metrics, "appliance_engine_kv_blocks_used") == 0
    assert value(metrics, "appliance_engine_step_batched_tokens_count") == 1


def test_each_engine_has_its_own_registry():
    a, b = EngineMetrics("m"), EngineMetrics("m")
    a.observe_output(output("x", [0.1], "stop"))
    assert value(a, "appliance_engine_request_ttft_seconds_count") == 1
    assert value(b, "appliance_engine_request_ttft_seconds_count") == 0
