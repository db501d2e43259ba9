"""EngineCore request handling: bad input, aborts, stop conditions, n > 1, logprobs, metrics."""
from __future__ import annotations

import pytest

from appliance.runtime import SamplingParams
from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore

GREEDY = dict(temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def engine(checkpoint_factory) -> EngineCore:
    return EngineCore(EngineConfig(str(checkpoint_factory("llama")), num_kv_blocks=128, max_model_len=96))


def _drain(engine: EngineCore) -> dict:
    finals: dict = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                finals[out.request_id] = out
    return finals


@pytest.mark.parametrize(
    "prompt, params, field",
    [
        ("", {}, "prompt"),
        ([], {}, "prompt"),
        ("word " * 200, {}, "context length"),
        ([1, 2, 999_999], {}, "token id"),
        ([1, 2, -5], {}, "token id"),
    ],
)
def test_bad_prompts_raise_value_error_naming_the_field(engine, prompt, params, field):
    with pytest.raises(ValueError, match=field):
        engine.add_request("bad", prompt, SamplingParams(**params))
    assert "bad" not in engine.requests


@pytest.mark.parametrize(
    "params, field",
    [({"max_tokens": -1}, "max_tokens"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"n": 0}, "n")],
)
def test_bad_sampling_params_raise_value_error_naming_the_field(params, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**params)


def test_params_changed_after_construction_are_validated_by_the_engine(engine):
    params = SamplingParams()
    params.max_tokens = -1  # 0 is valid: the prompt alone (echo, prompt logprobs)
    with pytest.raises(ValueError, match="max_tokens"):
        engine.add_request("mutated", "hello", params)


def test_engine_keeps_serving_others_after_bad_requests(engine):
    engine.add_request("good-1", "The quick brown fox", SamplingParams(max_tokens=5, **GREEDY))
    engine.step()
    for bad in ("", [10**9], "x " * 500):
        with pytest.raises(ValueError):
            engine.add_request("bad", bad, SamplingParams())
    engine.add_request("good-2", [5, 6, 7], SamplingParams(max_tokens=4, **GREEDY))
    finals = _drain(engine)
    assert len(finals["good-1"].token_ids) == 5 and len(finals["good-2"].token_ids) == 4
    assert engine.stats().kv_blocks_used == 0


def test_duplicate_request_id_is_rejected(engine):
    engine.add_request("dup", "hello", SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="request_id"):
        engine.add_request("dup", "hello", SamplingParams(max_tokens=2))
    _drain(engine)


def test_abort_frees_blocks_at_once_and_others_continue(engine):
    engine.add_request("keep", "It was the best of times", SamplingParams(max_tokens=6, **GREEDY))
    engine.add_request("drop", "Call me Ishmael. Some years ago", SamplingParams(max_tokens=50, **GREEDY))
    engine.step()
    engine.step()
    used = engine.stats().kv_blocks_used
    engine.abort_request("drop")
    assert engine.stats().kv_blocks_used < used
    finals = _drain(engine)
    assert set(finals) == {"keep"} and len(finals["keep"].token_ids) == 6
    assert engine.stats().kv_blocks_used == 0


def test_max_tokens_is_capped_by_the_context_length(engine):
    engine.add_request("long", list(range(5, 90)), SamplingParams(max_tokens=50, **GREEDY))
    out = _drain(engine)["long"]
    assert len(out.prompt_token_ids) + len(out.token_ids) == 96 and out.finish_reason == "length"


def test_eos_stops_with_reason_stop(engine):
    greedy = SamplingParams(max_tokens=30, **GREEDY)
    engine.add_request("probe", "The quick brown fox", greedy)
    tokens = _drain(engine)["probe"].token_ids
    engine.add_request("stop-id", "The quick brown fox", SamplingParams(max_tokens=30, temperature=0.0,
                                                                          stop_token_ids=[tokens[5]]))
    out = _drain(engine)["stop-id"]
    first = tokens.index(tokens[5])
    assert out.token_ids == tokens[: first + 1] and out.finish_reason == "stop"


def test_stop_string_spanning_tokens_is_cut_and_never_streamed(engine):
    engine.add_request("probe", "Call me Ishmael", SamplingParams(max_tokens=24, **GREEDY))
    full = _drain(engine)["probe"].text
    stop = full[len(full) // 2 : len(full) // 2 + 4]
    assert len(stop) == 4 and stop.strip()
    engine.add_request("s", "Call me Ishmael", SamplingParams(max_tokens=24, stop=[stop], **GREEDY))
    streamed = ""
    while engine.has_unfinished_requests():
        for out in engine.step():
            streamed += out.outputs[0].new_text
            final = out
    assert final.finish_reason == "stop"
    assert final.text == full[: full.index(stop)] == streamed
    assert stop not in streamed


def test_n_completions_share_the_prompt_blocks(engine):
    params = SamplingParams(n=3, max_tokens=8, temperature=1.0, seed=7, ignore_eos=True)
    engine.add_request("multi", "In a hole in the ground there lived a hobbit. " * 2, params)
    before = engine.stats().prefix_cache_hit_tokens
    out = _drain(engine)["multi"]
    assert [c.index for c in out.outputs] == [0, 1, 2]
    assert all(len(c.token_ids) == 8 and c.finish_reason == "length" for c in out.outputs)
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    assert engine.stats().prefix_cache_hit_tokens - before >= 2 * 16


def test_logprobs_are_returned_with_top_alternatives(engine):
    engine.add_request("lp", "The quick brown fox", SamplingParams(max_tokens=4, logprobs=3, **GREEDY))
    out = _drain(engine)["lp"].outputs[0]
    assert len(out.logprobs) == 4
    for token, entry in zip(out.token_ids, out.logprobs):
        assert entry["token_id"] == token and len(entry["top"]) == 3
        assert entry["top"][0]["token_id"] == token  # greedy: the sampled token is the most likely
        assert entry["logprob"] == pytest.approx(entry["top"][0]["logprob"]) and entry["logprob"] <= 0
        assert entry["top"][0]["logprob"] >= entry["top"][1]["logprob"] >= entry["top"][2]["logprob"]


def test_request_metrics_and_engine_stats_are_filled(engine):
    steps_before = engine.stats().steps
    engine.add_request("m", "The quick brown fox", SamplingParams(max_tokens=5, **GREEDY))
    out = _drain(engine)["m"]
    m = out.metrics
    assert m.queue_s >= 0 and m.ttft_s > 0 and m.e2e_s >= m.ttft_s
    assert len(m.inter_token_latencies) == 4 and all(x >= 0 for x in m.inter_token_latencies)
    s = engine.stats()
    assert s.steps >= steps_before + 5 and s.forward_time_total_s > 0
    assert s.step_time_total_s >= s.forward_time_total_s
    assert s.kv_blocks_total == 128 and s.num_running == 0 and s.num_waiting == 0
