"""Greedy decoding through the engine gives exactly transformers' tokens, on the same random-weight checkpoints."""
from __future__ import annotations

import pytest

from appliance.runtime import LLM, SamplingParams
from tests.runtime.conftest import PROMPTS

MAX_NEW = 20
GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, ignore_eos=True)


def _distinct_enough(token_lists: list[list[int]]) -> bool:
    return all(len(set(t)) >= 4 for t in token_lists)


@pytest.mark.parametrize("arch", ["llama", "llama3", "mistral", "qwen2"])
def test_greedy_matches_transformers_for_a_batch_of_prompts(checkpoint_factory, hf_reference, arch):
    path = checkpoint_factory(arch)
    llm = LLM(str(path), device="cpu", num_kv_blocks=256)
    outs = llm.generate(PROMPTS, GREEDY)
    expected = hf_reference(path, PROMPTS, MAX_NEW)
    assert _distinct_enough(expected), "reference outputs too repetitive to be a meaningful comparison"
    assert [o.token_ids for o in outs] == expected
    assert all(o.finish_reason == "length" for o in outs)
    assert llm.engine.stats().kv_blocks_used == 0


def _llama_reference(checkpoint_factory, hf_reference):
    path = checkpoint_factory("llama")
    return path, hf_reference(path, PROMPTS, MAX_NEW)


def test_chunked_prefill_is_exact(checkpoint_factory, hf_reference):
    path, expected = _llama_reference(checkpoint_factory, hf_reference)
    llm = LLM(str(path), device="cpu", max_num_batched_tokens=7, block_size=4, num_kv_blocks=256)
    assert [o.token_ids for o in llm.generate(PROMPTS, GREEDY)] == expected


def test_preemption_by_recompute_is_exact(checkpoint_factory, hf_reference):
    path, expected = _llama_reference(checkpoint_factory, hf_reference)
    llm = LLM(str(path), device="cpu", block_size=4, num_kv_blocks=45, enable_prefix_caching=False)
    assert [o.token_ids for o in llm.generate(PROMPTS, GREEDY)] == expected
    stats = llm.engine.stats()
    assert stats.num_preemptions > 0
    assert stats.kv_blocks_used == 0


def test_prefix_cache_hits_are_exact(checkpoint_factory, hf_reference):
    path = checkpoint_factory("llama")
    shared = PROMPTS[1] + " " + PROMPTS[4]
    prompts = [shared + " first", shared + " and a second ending", shared]
    expected = hf_reference(path, prompts, MAX_NEW)
    llm = LLM(str(path), device="cpu", block_size=4, num_kv_blocks=256)
    assert llm.generate(prompts[0], GREEDY)[0].token_ids == expected[0]
    assert [o.token_ids for o in llm.generate(prompts, GREEDY)] == expected
    stats = llm.engine.stats()
    assert stats.prefix_cache_hit_tokens > len(prompts) * 40


def test_token_id_prompts_are_exact(checkpoint_factory, hf_reference):
    path = checkpoint_factory("llama")
    prompts = [[5, 9, 200, 17, 300, 42], [100] * 3 + list(range(40, 80))]
    llm = LLM(str(path), device="cpu", num_kv_blocks=64)
    assert [o.token_ids for o in llm.generate(prompts, GREEDY)] == hf_reference(path, prompts, MAX_NEW)


def test_sharded_checkpoint_loads_exactly(checkpoint_factory, hf_reference):
    path = checkpoint_factory("qwen2", max_shard_size="60KB")
    assert (path / "model.safetensors.index.json").is_file()
    llm = LLM(str(path), device="cpu", num_kv_blocks=256)
    assert [o.token_ids for o in llm.generate(PROMPTS[:3], GREEDY)] == hf_reference(path, PROMPTS[:3], MAX_NEW)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_load(checkpoint_factory, hf_reference, dtype):
    path = checkpoint_factory("llama", dtype=dtype)
    llm = LLM(str(path), device="cpu", num_kv_blocks=256)  # computes in float32 on the CPU by default
    assert [o.token_ids for o in llm.generate(PROMPTS[:3], GREEDY)] == hf_reference(path, PROMPTS[:3], MAX_NEW)
    half = LLM(str(path), device="cpu", dtype=dtype, num_kv_blocks=256)
    outs = half.generate(PROMPTS[:3], GREEDY)
    assert all(len(o.token_ids) == MAX_NEW for o in outs)
    assert half.engine.executor.kv_caches[0][0].dtype.__str__() == f"torch.{dtype}"


def test_tied_embeddings_are_exact(checkpoint_factory, hf_reference):
    path = checkpoint_factory("llama", tie_word_embeddings=True)
    llm = LLM(str(path), device="cpu", num_kv_blocks=256)
    assert [o.token_ids for o in llm.generate(PROMPTS[:3], GREEDY)] == hf_reference(path, PROMPTS[:3], MAX_NEW)
