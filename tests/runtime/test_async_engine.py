"""AsyncEngine over the real EngineCore: concurrency, cancellation frees blocks, errors before streaming."""
from __future__ import annotations

import asyncio
import os
import time

import psutil
import pytest

from appliance.runtime.async_engine import AsyncEngine
from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore
from appliance.runtime.llm import LLM
from appliance.runtime.sampling_params import SamplingParams

PROMPTS = [
    "The quick brown fox",
    "It was the best of times, it was the worst of times",
    [5, 17, 99, 250, 3, 42],
    "Call me Ishmael. Some years ago",
    "def main():",
]


@pytest.fixture(scope="module")
def engine(tiny_llama):
    eng = AsyncEngine(EngineCore(EngineConfig(model=str(tiny_llama), max_num_seqs=8, num_kv_blocks=64)))
    yield eng
    eng.shutdown()


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def collect(engine: AsyncEngine, rid: str, prompt, params: SamplingParams):
    outs = [out async for out in engine.generate(rid, prompt, params)]
    return outs


async def test_concurrent_generate_matches_llm_generate(engine, tiny_llama):
    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    expected = LLM(str(tiny_llama), max_num_seqs=8, num_kv_blocks=64).generate(PROMPTS, params)
    results = await asyncio.gather(*(collect(engine, f"r{i}", p, params) for i, p in enumerate(PROMPTS)))
    for outs, want in zip(results, expected):
        final = outs[-1]
        assert final.finished and final.finish_reason == "length"
        assert final.token_ids == want.token_ids
        assert final.text == want.text
        streamed = [t for o in outs for t in o.outputs[0].new_token_ids]
        assert streamed == want.token_ids
        assert "".join(o.outputs[0].new_text for o in outs) == want.text


async def test_cancelled_consumer_aborts_and_frees_blocks(engine):
    params = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
    seen = asyncio.Event()

    async def consume():
        async for out in engine.generate("long", "a prompt that will be cut short", params):
            if len(out.token_ids) >= 3:
                seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 30)
    assert engine.stats().kv_blocks_used > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: engine.stats().kv_blocks_used == 0 and engine.stats().num_running == 0)
    assert engine.num_in_flight == 0
    outs = await collect(engine, "after", "still serving", SamplingParams(max_tokens=3, temperature=0.0,
                                                                          ignore_eos=True))
    assert len(outs[-1].token_ids) == 3


async def test_abort_by_id_ends_the_stream_with_abort(engine):
    stream = await engine.add_request("x", "abort me", SamplingParams(max_tokens=400, ignore_eos=True))
    first = await stream.get_batch()
    assert first and not first[-1].finished
    assert await engine.abort("x")
    outs = [o async for o in stream]
    assert outs[-1].finish_reason == "abort"
    await wait_for(lambda: engine.stats().kv_blocks_used == 0)
    assert not await engine.abort("x")


@pytest.mark.parametrize(
    "prompt, field",
    [("", "prompt"), ([], "prompt"), ([1, 10**6], "prompt"), ("word " * 600, "prompt")],
)
async def test_bad_input_raises_value_error_before_streaming(engine, prompt, field):
    with pytest.raises(ValueError) as err:
        await engine.add_request("bad", prompt, SamplingParams(max_tokens=4))
    assert str(err.value).startswith(field)
    assert engine.num_in_flight == 0
    outs = await collect(engine, "bad", "fine", SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True))
    assert outs[-1].finish_reason == "length"


async def test_duplicate_request_id_is_rejected(engine):
    stream = await engine.add_request("dup", "one", SamplingParams(max_tokens=50, ignore_eos=True))
    with pytest.raises(ValueError, match="request_id"):
        await engine.add_request("dup", "two", SamplingParams(max_tokens=2))
    stream.abort()


async def test_idle_engine_does_not_spin(engine):
    await collect(engine, "warm", "hello", SamplingParams(max_tokens=2))
    proc = psutil.Process(os.getpid())
    before = proc.cpu_times()
    await asyncio.sleep(1.0)
    after = proc.cpu_times()
    assert (after.user + after.system) - (before.user + before.system) < 0.3
