"""Sampling: seeds reproducible whatever the batch, and the sampler's filters and penalties."""
from __future__ import annotations

import pytest
import torch

from appliance.runtime import LLM, SamplingParams
from appliance.runtime import sampler as sampler_module
from appliance.runtime.sampler import SampleState, Sampler

PROMPT = "It was the best of times, it was"
OTHERS = ["The quick brown fox", "def main():", "Call me Ishmael. Some years ago, never mind how long", "0123"]


@pytest.fixture(scope="module")
def llm(checkpoint_factory) -> LLM:
    return LLM(str(checkpoint_factory("llama")), device="cpu", num_kv_blocks=256)


def _seeded(seed: int) -> SamplingParams:
    return SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, top_k=100, seed=seed, ignore_eos=True)


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(llm):
    alone = llm.generate([PROMPT], _seeded(1234))[0].token_ids
    mixed_params = [SamplingParams(max_tokens=16, temperature=1.0, ignore_eos=True, seed=i) for i in range(4)]
    batch = llm.generate(OTHERS[:2] + [PROMPT] + OTHERS[2:], mixed_params[:2] + [_seeded(1234)] + mixed_params[2:])
    unseeded = llm.generate(OTHERS + [PROMPT], [SamplingParams(max_tokens=8, temperature=1.0)] * 4 + [_seeded(1234)])
    assert batch[2].token_ids == alone
    assert unseeded[4].token_ids == alone


def test_different_seeds_give_different_samples(llm):
    outs = llm.generate([PROMPT] * 4, [_seeded(s) for s in range(4)])
    assert len({tuple(o.token_ids) for o in outs}) > 1


def _state(params: SamplingParams, tokens=(1, 2, 3), prompt_len=2, sampler=None) -> SampleState:
    gen = sampler.make_generator(params.seed) if sampler else None
    return SampleState(params, list(tokens), prompt_len, gen)


def _logits(rows: int = 4, vocab: int = 50) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3


@pytest.mark.parametrize("kw", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}])
def test_filters_that_keep_one_token_act_like_greedy(kw):
    logits = _logits()
    sampler = Sampler()
    out = sampler(logits, [_state(SamplingParams(temperature=1.5, **kw)) for _ in range(4)])
    assert out.token_ids == logits.argmax(-1).tolist()


def test_top_k_only_samples_among_the_k_best():
    logits = _logits(rows=1).repeat(200, 1)
    out = Sampler()(logits, [_state(SamplingParams(temperature=5.0, top_k=3)) for _ in range(200)])
    assert set(out.token_ids) <= set(logits[0].topk(3).indices.tolist())
    assert len(set(out.token_ids)) > 1


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(300, 1)
    out = Sampler()(logits, [_state(SamplingParams(temperature=1.0, top_p=0.7)) for _ in range(300)])
    assert set(out.token_ids) == {0, 1}


def test_repetition_penalty_discourages_seen_tokens():
    logits = torch.zeros(1, 10)
    logits[0, 3] = 2.0
    logits[0, 4] = 1.9
    plain = Sampler()(logits, [_state(SamplingParams(temperature=0.0), tokens=(3, 3))])
    penalized = Sampler()(logits, [_state(SamplingParams(temperature=0.0, repetition_penalty=1.5), tokens=(3, 3))])
    assert plain.token_ids == [3] and penalized.token_ids == [4]


def test_frequency_and_presence_penalties_count_only_generated_tokens():
    logits = torch.zeros(1, 10)
    logits[0, 3] = 1.0
    logits[0, 5] = 0.5
    in_prompt = _state(SamplingParams(temperature=0.0, frequency_penalty=2.0), tokens=(3, 3, 5), prompt_len=2)
    assert Sampler()(logits, [in_prompt]).token_ids == [3]
    generated = _state(SamplingParams(temperature=0.0, presence_penalty=1.0), tokens=(1, 3), prompt_len=1)
    assert Sampler()(logits, [generated]).token_ids == [5]


def test_same_seed_same_tokens_regardless_of_row():
    sampler = Sampler()
    logits = _logits(rows=1)
    a = sampler(logits, [_state(SamplingParams(temperature=1.0, seed=5), sampler=sampler)])
    mixed = torch.cat([_logits(rows=3) * 0.1, logits])
    others = [_state(SamplingParams(temperature=1.0)) for _ in range(3)]
    b = sampler(mixed, others + [_state(SamplingParams(temperature=1.0, seed=5), sampler=sampler)])
    assert a.token_ids[0] == b.token_ids[3]


def test_logprobs_are_log_softmax_of_the_logits():
    logits = _logits(rows=2)
    out = Sampler()(logits, [_state(SamplingParams(temperature=0.0, logprobs=2)) for _ in range(2)])
    lsm = torch.log_softmax(logits, -1)
    for row, (lp, top) in enumerate(out.logprobs):
        assert lp == pytest.approx(lsm[row].max().item(), abs=1e-5)
        assert [t for t, _ in top] == lsm[row].topk(2).indices.tolist()


def test_random_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(probs).repeat(20000, 1)
    out = Sampler()(logits, [_state(SamplingParams(temperature=1.0)) for _ in range(20000)])
    freq = torch.bincount(torch.tensor(out.token_ids), minlength=5) / 20000
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.015)  # 0.015 is > 4 standard deviations at 20,000 draws
    assert freq[4] == 0


def test_top_p_beyond_the_sampler_candidates_is_still_exact():
    # 3,000 tokens with slowly falling probability: the nucleus of p=0.9 holds far more than the 1,024 candidates the
    # fast path looks at, so this row takes the full sort, and samples land past candidate 1,024 but never past p.
    vocab = 3000
    logits = (-0.0005 * torch.arange(vocab, dtype=torch.float32)).repeat(400, 1)
    probs = torch.softmax(logits[0], dim=-1)
    nucleus_end = int(((probs.cumsum(0) - probs) < 0.9).sum())
    assert nucleus_end > sampler_module.NUCLEUS_CANDIDATES
    out = Sampler()(logits, [_state(SamplingParams(temperature=1.0, top_p=0.9)) for _ in range(400)])
    assert max(out.token_ids) < nucleus_end
    assert max(out.token_ids) >= sampler_module.NUCLEUS_CANDIDATES


def test_greedy_picks_the_first_maximum_as_torch_argmax_does_with_ties_nan_and_minus_inf():
    g = torch.Generator().manual_seed(5)
    logits = torch.randint(0, 4, (9, 300), generator=g).float()  # many ties per row
    logits[2, 17] = float("nan")
    logits[5] = float("-inf")
    states = [SampleState(SamplingParams(temperature=0.0), [1], 1) for _ in range(9)]
    assert Sampler()(logits, states).token_ids == logits.argmax(dim=-1).tolist()
