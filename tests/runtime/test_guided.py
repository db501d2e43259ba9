"""Grammar-constrained decoding in the engine: the sampler never picks a token the grammar forbids, every one of n
completions follows its schema on a random model, a finished grammar stops the sequence, and bad grammars are
refused before anything is queued."""
from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from appliance.runtime.guided import GuidedDecoding, InvalidGrammar, Matcher, allowed_tokens
from appliance.runtime.llm import LLM
from appliance.runtime.sampler import SampleState, Sampler
from appliance.runtime.sampling_params import SamplingParams

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6},
                                           "rank": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["city", "rank"], "additionalProperties": False}


class OnlyTokens(Matcher):
    def __init__(self, allowed: list[int], vocab_size: int) -> None:
        self.allowed, self.vocab_size = allowed, vocab_size

    def fill_mask(self, bitmask, row):
        bitmask[row] = 0
        for t in self.allowed:
            bitmask[row, t // 32] |= 1 << (t % 32)

    def accept(self, token_id):
        return token_id in self.allowed

    def rollback(self, num_tokens):
        pass

    @property
    def finished(self):
        return False


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sampler_only_picks_tokens_the_grammar_allows_and_leaves_other_rows_alone(temperature):
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    allowed = [5, 37, 70]
    params = SamplingParams(temperature=temperature, logprobs=1)
    states = [SampleState(params, [1], 1, torch.Generator().manual_seed(i), OnlyTokens(allowed, 100) if i != 1 else None)
              for i in range(3)]
    for _ in range(20):
        out = Sampler()(logits, states)
        assert out.token_ids[0] in allowed and out.token_ids[2] in allowed
    if temperature == 0:
        assert out.token_ids[1] == int(logits[1].argmax())
    raw = torch.log_softmax(logits, dim=-1)  # logprobs stay those of the model's own distribution
    assert out.logprobs[0][0] == pytest.approx(float(raw[0, out.token_ids[0]]), abs=1e-5)


@pytest.fixture(scope="module")
def llm(tiny_llama):
    return LLM(str(tiny_llama))


def test_every_completion_of_n_follows_the_schema_on_a_random_model(llm):
    spec = {"type": "json_schema", "schema": SCHEMA}
    outs = llm.generate(["Where?", "Rank:"], SamplingParams(n=3, max_tokens=64, seed=11, guided=spec))
    for out in outs:
        for c in out.outputs:
            assert c.finish_reason == "stop"
            jsonschema.validate(json.loads(c.text), SCHEMA)
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_used_blocks == 0


def test_a_finished_grammar_stops_before_eos_and_a_short_budget_ends_with_length(llm):
    eos = llm.engine.eos_token_ids
    done = llm.generate("x", SamplingParams(max_tokens=64, temperature=0, guided={"type": "json_object"}))[0]
    assert done.outputs[0].finish_reason == "stop" and not eos & set(done.outputs[0].token_ids)
    json.loads(done.outputs[0].text)
    cut = llm.generate("x", SamplingParams(max_tokens=2, seed=0, guided={"type": "json_schema", "schema": SCHEMA}))
    assert cut[0].outputs[0].finish_reason == "length"


def test_invalid_schema_is_refused_before_the_request_is_queued(llm):
    bad = {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}
    with pytest.raises(InvalidGrammar, match="strin"):
        llm.engine.add_request("bad", "x", SamplingParams(guided=bad))
    assert "bad" not in llm.engine.requests and not llm.engine.scheduler.waiting
    with pytest.raises(ValueError, match="guided"):
        SamplingParams(guided={"type": "regex"})


def test_each_spec_is_compiled_once(tiny_llama):
    from transformers import AutoTokenizer

    guided = GuidedDecoding(AutoTokenizer.from_pretrained(tiny_llama), 512)
    spec = {"type": "json_schema", "schema": SCHEMA}
    first = guided.compile(spec)
    assert guided.compile(json.loads(json.dumps(spec))) is first and spec in guided
    a, b = guided.matcher(spec), guided.matcher(spec)
    brace = guided.backend.tokenizer.tokenize_str("{")[0]
    assert a.accept(brace) and not a.finished
    bitmask = torch.full((1, 16), -1, dtype=torch.int32)
    b.fill_mask(bitmask, 0)  # each matcher has its own state: b, still at the start, allows only an opening "{"
    allowed = torch.nonzero(allowed_tokens(bitmask, 512)[0]).flatten().tolist()
    assert brace in allowed and all(guided.backend.tokenizer.decode_str([t]).startswith("{") for t in allowed)
