"""Prompt lists, echo with the prompt's own logprobs, and vLLM's tokenizer endpoints: the official openai client
(and plain HTTP for the root endpoints) against the live gateway and a real replica."""
from __future__ import annotations

import httpx
import openai
import pytest
import torch

from .conftest import World, committed, make_key

pytestmark = pytest.mark.django_db

PROMPT = "Call me Ishmael. Some years ago, never mind how long precisely"
PROMPTS = ["The quick brown fox", "It was the best of times", "def main():"]


@pytest.fixture(scope="module")
def hf(world: World):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(world.engine.model_dir)
    model = AutoModelForCausalLM.from_pretrained(world.engine.model_dir, dtype=torch.float32)
    return tok, model


def hf_prompt_logprobs(hf, ids: list[int]) -> list[float]:
    _, model = hf
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return [lp[p - 1, ids[p]].item() for p in range(1, len(ids))]


@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_logprobs_equal_transformers_log_softmax_of_the_prompt(client, world: World, hf, max_tokens):
    tok, _ = hf
    ids = tok(PROMPT).input_ids
    out = client.completions.create(model=world.model, prompt=PROMPT, echo=True, logprobs=1, max_tokens=max_tokens,
                                    temperature=0)
    choice = out.choices[0]
    lp = choice.logprobs
    assert choice.text.startswith(PROMPT) and len(lp.tokens) == len(ids) + max_tokens
    assert lp.tokens[: len(ids)] == [tok.decode([t]) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    expected = hf_prompt_logprobs(hf, ids)
    assert max(abs(a - b) for a, b in zip(lp.token_logprobs[1 : len(ids)], expected)) < 1e-4
    assert all(len(top) == 1 and max(top.values()) >= v - 1e-6
               for top, v in zip(lp.top_logprobs[1:], lp.token_logprobs[1:]))
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert out.usage.prompt_tokens == len(ids) and out.usage.completion_tokens == max_tokens
    if max_tokens == 0:
        assert choice.text == PROMPT and choice.finish_reason == "length"


def test_prompt_list_of_three_returns_three_choices_in_order(client, world: World):
    singles = [client.completions.create(model=world.model, prompt=p, max_tokens=4, temperature=0) for p in PROMPTS]
    out = client.completions.create(model=world.model, prompt=PROMPTS, max_tokens=4, temperature=0)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert [c.text for c in out.choices] == [s.choices[0].text for s in singles]
    assert out.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)
    assert out.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)


def test_prompt_list_with_n_two_gives_six_choices_indexed_prompt_times_n_plus_j(client, world: World):
    out = client.completions.create(model=world.model, prompt=PROMPTS, n=2, max_tokens=3, echo=True, seed=7)
    assert [c.index for c in out.choices] == list(range(6))
    assert all(c.text.startswith(PROMPTS[c.index // 2]) for c in out.choices)


def test_streamed_prompt_list_chunks_carry_their_choice_index(client, world: World):
    kwargs = dict(model=world.model, prompt=PROMPTS, n=2, max_tokens=5, temperature=0)
    whole = client.completions.create(**kwargs)
    texts: dict[int, str] = {}
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {c.index: c.text for c in whole.choices}
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_token_id_list_prompts_with_echo_decode_and_match_text_prompts(client, world: World, hf):
    tok, _ = hf
    id_prompts = [tok(p).input_ids for p in PROMPTS[:2]]
    by_ids = client.completions.create(model=world.model, prompt=id_prompts, max_tokens=3, temperature=0, echo=True,
                                       logprobs=0)
    by_text = client.completions.create(model=world.model, prompt=PROMPTS[:2], max_tokens=3, temperature=0, echo=True,
                                        logprobs=0)
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    for a, b in zip(by_ids.choices, by_text.choices):  # batched differently: equal up to float rounding
        assert a.logprobs.token_logprobs[0] is None and b.logprobs.token_logprobs[0] is None
        assert a.logprobs.token_logprobs[1:] == pytest.approx(b.logprobs.token_logprobs[1:], abs=1e-4)
    assert all(c.text.startswith(tok.decode(ids)) for c, ids in zip(by_ids.choices, id_prompts))


def test_streamed_echo_with_logprobs_sends_the_prompt_first(client, world: World):
    chunks = list(client.completions.create(model=world.model, prompt=PROMPT, echo=True, logprobs=1, max_tokens=2,
                                            temperature=0, stream=True))
    first = chunks[0].choices[0]
    assert first.text.startswith(PROMPT) and first.logprobs.token_logprobs[0] is None
    tokens = [t for c in chunks for t in (c.choices[0].logprobs.tokens if c.choices[0].logprobs else [])]
    assert "".join(tokens) == "".join(c.choices[0].text for c in chunks)


@pytest.mark.parametrize("body, param, message", [
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens", "allowed with echo"),
    ({"prompt": ["ok", ""]}, "prompt", "prompt[1] must not be empty"),
    ({"prompt": [[1, 2], [-1]]}, "prompt", "non-negative"),
    ({"prompt": [[1, 2], "text", 3]}, "prompt", "list of token-id lists"),
    ({"prompt": ["ok", [10**6]]}, "prompt", "prompt[1]"),
])
def test_bad_prompt_lists_are_400s_naming_the_field(client, world: World, body, param, message):
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=world.model, **body)
    assert exc.value.body["param"] == param and message in exc.value.body["message"]
    assert world.engine.health()["kv_blocks_used"] == 0


def test_a_prompt_too_long_in_a_list_names_it_and_leaves_nothing_running(client, world: World):
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=world.model, prompt=["short", "word " * 5000], max_tokens=2)
    assert exc.value.code == "context_length_exceeded" and "prompt[1]" in exc.value.body["message"]
    health = world.engine.health()
    assert health["kv_blocks_used"] == 0 and health["in_flight"] == 0


def test_quota_reserves_tokens_for_every_prompt_of_a_list(world: World):
    from django.db import connections  # noqa: F401  (committed() below closes its own)

    _, key = committed(make_key, "listquota", ["tiny"], tpm=100)
    with openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0) as c:
        with pytest.raises(openai.RateLimitError):
            c.completions.create(model=world.model, prompt=PROMPTS, max_tokens=30)
        assert len(c.completions.create(model=world.model, prompt=PROMPTS[0], max_tokens=30).choices) == 1


# ---- tokenizer endpoints ------------------------------------------------------------------------------------------

def _root(world: World, method: str, path: str, key: str | None = None, **kw) -> httpx.Response:
    key = world.acme_key if key is None else key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{world.appliance.url}{path}", headers=headers, timeout=30, **kw)


def test_tokenizer_endpoints_round_trip_as_vllm_serves_them(world: World, hf):
    tok, _ = hf
    info = _root(world, "GET", f"/tokenizer_info?model={world.model}")
    assert info.status_code == 200, info.text
    assert info.json()["eos_token"] == tok.eos_token and info.json()["tokenizer_class"]
    tokens = _root(world, "POST", "/tokenize", json={"model": world.model, "prompt": PROMPT,
                                                      "add_special_tokens": False, "return_token_strs": True}).json()
    assert tokens["tokens"] == tok(PROMPT, add_special_tokens=False).input_ids
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] > 0
    assert tokens["token_strs"] == tok.convert_ids_to_tokens(tokens["tokens"])
    back = _root(world, "POST", "/detokenize", json={"model": world.model, "tokens": tokens["tokens"]})
    assert back.json() == {"prompt": PROMPT}
    chat = _root(world, "POST", "/tokenize", json={"model": world.model, "messages": [{"role": "user",
                                                                                      "content": "Hi"}]}).json()
    assert tok.decode(chat["tokens"]).endswith("<|assistant|>\n")


def test_tokenizer_endpoints_need_a_key_and_a_model_the_key_may_use(world: World):
    assert _root(world, "GET", "/tokenizer_info", key="").status_code == 401
    assert _root(world, "POST", "/tokenize", key="sk-nope", json={"prompt": "x"}).status_code == 401
    hidden = _root(world, "POST", "/tokenize", json={"model": world.other_model, "prompt": "x"})
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    several = _root(world, "POST", "/tokenize", json={"prompt": "x"})  # acme may use two deployments
    assert several.status_code == 400 and several.json()["error"]["param"] == "model"
    bad = _root(world, "POST", "/detokenize", json={"model": world.model, "tokens": [10**7]})
    assert bad.status_code == 400 and "unknown token id" in bad.json()["error"]["message"]
    assert _root(world, "GET", "/tokenize").status_code == 405
