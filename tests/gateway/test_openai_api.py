"""The official openai client, sync and async, against the live gateway and a real engine replica."""
from __future__ import annotations

import openai
import pytest

from .conftest import World

pytestmark = pytest.mark.django_db


def test_model_list_shows_only_models_the_key_may_use(client, world: World):
    ids = {m.id for m in client.models.list()}
    assert world.model in ids and world.cold_model in ids
    assert world.other_model not in ids
    assert client.models.retrieve(world.model).id == world.model


def test_completion_returns_text_and_usage(client, world: World):
    out = client.completions.create(model=world.model, prompt="Hello there", max_tokens=5, temperature=0)
    assert out.object == "text_completion" and out.model == world.model
    assert len(out.choices) == 1 and isinstance(out.choices[0].text, str)
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage.prompt_tokens > 0 and 1 <= out.usage.completion_tokens <= 5
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


async def test_chat_completion_async(aclient, world: World):
    out = await aclient.chat.completions.create(
        model=world.model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_completion_tokens=6, temperature=0)
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant" and isinstance(out.choices[0].message.content, str)
    assert 1 <= out.usage.completion_tokens <= 6


def test_streamed_completion_matches_the_unstreamed_one_and_reports_usage(client, world: World):
    kwargs = dict(model=world.model, prompt="Once upon a time", max_tokens=8, temperature=0)
    whole = client.completions.create(**kwargs)
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]


async def test_streamed_chat_async_with_usage(aclient, world: World):
    stream = await aclient.chat.completions.create(
        model=world.model, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=7,
        temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    content = [c for c in chunks if c.choices]
    assert content[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 7
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(client, world: World):
    chunks = list(client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "x"}],
                                                 max_tokens=3, stream=True))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_n_seed_and_logprobs(client, world: World):
    kwargs = dict(model=world.model, prompt="abc", max_tokens=4, temperature=1.0, seed=1234, n=2, logprobs=2)
    a, b = client.completions.create(**kwargs), client.completions.create(**kwargs)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # same seed, same output
    lp = a.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) >= 1
    assert all(v <= 0 for v in lp.token_logprobs)
    chat = client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "q"}],
                                          max_tokens=3, logprobs=True, top_logprobs=2, temperature=0)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and len(content[0].top_logprobs) == 2


def test_stop_sequence_is_not_returned(client, world: World):
    base = client.completions.create(model=world.model, prompt="Hello", max_tokens=12, temperature=0)
    text = base.choices[0].text
    if len(text) < 3:
        pytest.skip("the random model produced too little text to pick a stop string")
    stop = text[2:4] if len(text) >= 4 else text[2]
    out = client.completions.create(model=world.model, prompt="Hello", max_tokens=12, temperature=0, stop=[stop])
    assert out.choices[0].finish_reason == "stop"
    assert stop not in out.choices[0].text and text.startswith(out.choices[0].text)
