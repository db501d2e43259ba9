"""The bucketed CPU mode (static shapes, the buckets a Neuron artifact would have) is token-identical to the engine."""
import pytest

from appliance.runtime.executor.bucketed import BucketedTorchExecutor
from appliance.runtime.llm import LLM
from appliance.runtime.sampling_params import SamplingParams

BASE = list(range(10, 50))
PROMPTS = [BASE + [60, 61], [5, 6, 7], BASE + [70], list(range(100, 133)), [9], list(range(200, 217))]
BUCKETS = {"batch_sizes": [1, 2, 4, 8], "context_lengths": [16, 32, 64], "token_lengths": [32, 64, 128]}
ENGINE = dict(max_model_len=128, block_size=16, max_num_seqs=8, max_num_batched_tokens=48)
GREEDY = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)


def generate(model, **kwargs):
    llm = LLM(str(model), **ENGINE, **kwargs)
    shapes = []
    ex = llm.engine.executor
    if isinstance(ex, BucketedTorchExecutor):
        run = ex.execute

        def recording(batch):
            out = run(batch)
            shapes.extend(ex.last_shapes)
            return out

        ex.execute = recording
    return [o.token_ids for o in llm.generate(PROMPTS, GREEDY)], shapes


@pytest.mark.parametrize("arch", ["llama", "llama3"])
def test_bucketed_greedy_output_is_token_identical(checkpoint_factory, arch):
    model = checkpoint_factory(arch)
    plain, _ = generate(model)
    bucketed, shapes = generate(model, bucketing=BUCKETS)
    assert bucketed == plain
    assert all(len(t) == 12 for t in plain) and len({tuple(t) for t in plain}) > 1
    decodes = [s for s in shapes if s["kind"] == "decode"]
    prefills = [s for s in shapes if s["kind"] == "prefill"]
    assert any(s["batch"] > s["rows"] for s in decodes), "no decode step was padded"
    assert any(s["length"] > s["tokens"] for s in prefills), "no prefill was padded"
    assert all(s["length"] in (32, 64, 128) for s in decodes) and all(s["length"] in (16, 32, 64) for s in prefills)


def test_bucketed_output_survives_preemption_and_prefix_hits(tiny_llama):
    plain_llm = LLM(str(tiny_llama), **{**ENGINE, "num_kv_blocks": 10})
    bucketed_llm = LLM(str(tiny_llama), **{**ENGINE, "num_kv_blocks": 10}, bucketing=BUCKETS)
    plain = [o.token_ids for o in plain_llm.generate(PROMPTS, GREEDY)]
    bucketed = [o.token_ids for o in bucketed_llm.generate(PROMPTS, GREEDY)]
    assert bucketed == plain
    assert bucketed_llm.engine.scheduler.num_preemptions > 0
    assert bucketed_llm.engine.block_manager.prefix_hit_tokens > 0
    assert bucketed_llm.engine.block_manager.num_blocks == 10 and bucketed_llm.engine.executor.scratch_block == 10


def test_bucketing_that_cannot_hold_the_engine_limits_is_an_error(tiny_llama):
    with pytest.raises(ValueError, match="bucketing: max_num_seqs 8 exceeds the largest batch bucket 4"):
        LLM(str(tiny_llama), **ENGINE, bucketing={**BUCKETS, "batch_sizes": [1, 4]})
    with pytest.raises(ValueError, match="largest context bucket is 32"):
        LLM(str(tiny_llama), **ENGINE, bucketing={**BUCKETS, "context_lengths": [16, 32]})
    with pytest.raises(ValueError, match="bucketing must give batch_sizes"):
        LLM(str(tiny_llama), **ENGINE, bucketing={"batch_sizes": [8]})
