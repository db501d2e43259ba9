"""The step profile charges a step's time to its stages: every linear, attention, the LM head, host work."""
from __future__ import annotations

import random

from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore
from appliance.runtime.stage_clock import NULL_CLOCK
from appliance.runtime.step_profile import Scenario, format_table, run_scenario

FORWARD = {"embedding", "rms_norm", "qkv_proj", "rotary", "attention", "o_proj+residual", "gate_up+silu_mul",
           "down_proj+residual", "lm_head"}
HOST = {"scheduler", "step batch (engine)", "prepare (executor)", "sampling", "detokenize+outputs"}


def test_decode_and_prefill_steps_are_charged_to_every_stage(checkpoint_factory):
    core = EngineCore(EngineConfig(str(checkpoint_factory("llama")), num_kv_blocks=128, block_size=4))
    rng = random.Random(0)
    decode = run_scenario(core, Scenario("decode 4", decode_batch=4, context=40), 3, rng)
    prefill = run_scenario(core, Scenario("prefill 2x30", prefill_lens=[30, 30]), 2, rng)

    for result in (decode, prefill):
        assert FORWARD | HOST <= set(result.stages), sorted(result.stages)
        assert all(s >= 0 for s in result.stages.values())
        assert 0.95 * result.step_s <= sum(result.stages.values()) <= result.step_s * 1.0001, result.stages
    assert (decode.tokens, decode.logits_rows, prefill.tokens, prefill.logits_rows) == (4, 4, 60, 2)
    assert not core.has_unfinished_requests() and core.clock is NULL_CLOCK and core.executor.clock is NULL_CLOCK

    table = format_table([decode, prefill], core.args)
    assert table.splitlines()[0] == "| stage | decode 4 | prefill 2x30 |"
    assert "| qkv_proj |" in table and "| outside the forward |" in table and "| linears GFLOP/s |" in table


def test_a_whole_run_charges_every_step_and_gives_every_token(checkpoint_factory):
    from appliance.runtime.bench_workload import BenchRequest
    from appliance.runtime.step_profile import whole_run

    core = EngineCore(EngineConfig(str(checkpoint_factory("llama")), num_kv_blocks=128, block_size=4,
                                   step_token_budget=16, max_num_seqs=4))
    rng = random.Random(1)
    requests = [BenchRequest(i, [rng.randrange(4, 100) for _ in range(n)], m)
                for i, (n, m) in enumerate([(30, 5), (9, 12), (17, 3)])]
    seconds, steps, tokens, stages = whole_run(core, requests)
    assert tokens == 5 + 12 + 3 and steps >= 12
    assert FORWARD | HOST <= set(stages) and 0.95 * seconds <= sum(stages.values()) <= seconds * 1.0001
    assert not core.has_unfinished_requests() and core.clock is NULL_CLOCK and core.executor.clock is NULL_CLOCK
