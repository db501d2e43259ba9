"""Prompt logprobs (echo with logprobs): computed by the engine's own prefill, equal to transformers' log-softmax of
the same prompt on the same weights, through chunked prefill and a warm prefix cache alike."""
from __future__ import annotations

import pytest
import torch

from appliance.runtime import SamplingParams
from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore
from tests.runtime.conftest import PROMPTS

PROMPT = PROMPTS[1]


def hf_prompt_logprobs(model_dir, prompt: str) -> tuple[list[int], list[float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(model_dir)(prompt).input_ids
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return ids, [lp[p - 1, ids[p]].item() for p in range(1, len(ids))]


def run(engine: EngineCore, request_id: str, prompt, params: SamplingParams) -> tuple[list, list]:
    """(prompt logprobs, final completion outputs) of one request stepped to its end."""
    engine.add_request(request_id, prompt, params)
    prompt_lps, last = None, None
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.prompt_logprobs is not None:
                assert prompt_lps is None, "prompt logprobs must be sent once"
                prompt_lps = out.prompt_logprobs
            last = out
    return prompt_lps, last.outputs


@pytest.fixture(scope="module")
def reference(tiny_llama):
    return hf_prompt_logprobs(tiny_llama, PROMPT)


@pytest.mark.parametrize("chunk", [2048, 7])
def test_prompt_logprobs_equal_transformers_log_softmax(tiny_llama, reference, chunk):
    ids, expected = reference
    engine = EngineCore(EngineConfig(model=str(tiny_llama), device="cpu", block_size=4, num_kv_blocks=128,
                                     max_num_batched_tokens=chunk))
    lps, outs = run(engine, "r", PROMPT, SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=2))
    assert [e["token_id"] for e in lps] == ids
    assert lps[0]["logprob"] is None
    assert max(abs(e["logprob"] - x) for e, x in zip(lps[1:], expected)) < 1e-4
    assert all(len(e["top"]) == 2 and e["top"][0]["logprob"] >= e["logprob"] - 1e-6 for e in lps[1:])
    assert len(outs[0].token_ids) == 1

    # the same prompt again, its blocks now in the prefix cache: every position is still computed
    lps_again, _ = run(engine, "again", PROMPT, SamplingParams(max_tokens=1, prompt_logprobs=0))
    assert [e["logprob"] for e in lps_again[1:]] == pytest.approx(expected, abs=1e-4)
    assert engine.stats().kv_blocks_used == 0


def test_max_tokens_zero_returns_only_the_prompt(tiny_llama, reference):
    ids, expected = reference
    engine = EngineCore(EngineConfig(model=str(tiny_llama), device="cpu", num_kv_blocks=128))
    lps, outs = run(engine, "r", ids, SamplingParams(max_tokens=0, n=2, prompt_logprobs=1))
    assert [e["logprob"] for e in lps[1:]] == pytest.approx(expected, abs=1e-4)
    assert [(o.token_ids, o.finish_reason) for o in outs] == [([], "length"), ([], "length")]
    assert engine.stats().kv_blocks_used == 0


def test_bucketed_executor_refuses_prompt_logprobs(tiny_llama):
    buckets = {"batch_sizes": [1, 2], "context_lengths": [64, 128], "token_lengths": [128]}
    engine = EngineCore(EngineConfig(model=str(tiny_llama), device="cpu", num_kv_blocks=64, max_num_seqs=2,
                                     max_num_batched_tokens=128, max_model_len=128, bucketing=buckets))
    with pytest.raises(ValueError, match="prompt_logprobs are not available on this replica"):
        engine.add_request("r", "hello", SamplingParams(prompt_logprobs=1))
    assert not engine.has_unfinished_requests()
