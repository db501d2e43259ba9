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
