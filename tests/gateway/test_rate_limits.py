"""Quotas through the API: exact under concurrency, 429 with OpenAI's x-ratelimit-* headers and Retry-After."""
from __future__ import annotations

import asyncio

import openai
import pytest

from .conftest import World, committed, make_key

pytestmark = pytest.mark.django_db


def key_with(**quotas) -> str:
    """A new tenant with these quotas on its key (the tenant itself unlimited)."""
    from appliance.tenancy.services import create_api_key

    def make():
        key, _ = make_key("quota", ["tiny"])
        return create_api_key(key.tenant, **quotas)[1]

    return committed(make)


def sync_client(world: World, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)


def test_fifty_concurrent_requests_against_rpm_10_admit_exactly_10(world: World):
    key = key_with(rpm=10)

    async def burst():
        async with openai.AsyncOpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60) as c:
            async def one():
                try:
                    await c.completions.create(model=world.model, prompt="hi", max_tokens=1)
                    return 200
                except openai.RateLimitError as exc:
                    return exc.status_code
            return await asyncio.gather(*[one() for _ in range(50)])

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 10 and statuses.count(429) == 40


def test_rpm_429_carries_rate_limit_headers(world: World):
    client = sync_client(world, key_with(rpm=2, tpm=100_000))
    ok = client.completions.with_raw_response.create(model=world.model, prompt="hi", max_tokens=1)
    assert ok.headers["x-ratelimit-limit-requests"] == "2" and ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["x-ratelimit-limit-tokens"] == "100000"
    client.completions.create(model=world.model, prompt="hi", max_tokens=1)
    with pytest.raises(openai.RateLimitError) as exc:
        client.completions.create(model=world.model, prompt="hi", max_tokens=1)
    headers = exc.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0" and int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-reset-requests"].endswith("s") and "x-ratelimit-remaining-tokens" in headers
    assert exc.value.body["code"] == "rate_limit_exceeded" and exc.value.body["type"] == "rate_limit_error"


def test_tpm_counts_prompt_and_completion_tokens(world: World):
    client = sync_client(world, key_with(tpm=60))
    prompt = [5, 6]  # token ids: the gateway's reservation (prompt + max_tokens) is then exact
    first = client.completions.create(model=world.model, prompt=prompt, max_tokens=20)
    left = 60 - first.usage.total_tokens  # the first request may stop early at EOS: its exact count is what counts
    with pytest.raises(openai.RateLimitError) as exc:
        client.completions.create(model=world.model, prompt=prompt, max_tokens=left - len(prompt) + 1)
    assert "tokens per minute" in exc.value.message
    remaining = int(exc.value.response.headers["x-ratelimit-remaining-tokens"])
    assert remaining == left  # reconciled to the engine's exact count
    client.completions.create(model=world.model, prompt=prompt, max_tokens=left - len(prompt))  # exactly fits


def test_concurrency_limit_frees_its_slot_when_a_stream_ends(world: World):
    client = sync_client(world, key_with(max_concurrency=1))
    stream = client.completions.create(model=world.model, prompt="hi", max_tokens=30, stream=True)
    next(iter(stream))
    with pytest.raises(openai.RateLimitError) as exc:
        client.completions.create(model=world.model, prompt="hi", max_tokens=1)
    assert "concurrent" in exc.value.message
    stream.close()
    for _ in range(50):  # the gateway notices the disconnect and releases the slot
        try:
            client.completions.create(model=world.model, prompt="hi", max_tokens=1)
            break
        except openai.RateLimitError:
            import time

            time.sleep(0.1)
    else:
        pytest.fail("the concurrency slot was never released")


def test_monthly_budget_exhausted_is_429_insufficient_quota(world: World):
    client = sync_client(world, key_with(monthly_tokens=40))
    client.completions.create(model=world.model, prompt="hi", max_tokens=10)
    with pytest.raises(openai.RateLimitError) as exc:
        client.completions.create(model=world.model, prompt="hi", max_tokens=40)
    assert exc.value.body["code"] == "insufficient_quota"


@pytest.fixture(scope="module")
def second_gateway(world: World, tmp_path_factory):
    """Another gateway process (uvicorn) on the same database and Redis: admission must hold across both."""
    from .conftest import start_gateway, stop_gateway

    gateway = start_gateway(tmp_path_factory.mktemp("gateway-2"))
    yield gateway
    stop_gateway(gateway)


TOKEN_PROMPT = [5, 6]  # token ids: the reservation (prompt + max_tokens) is exact, and with ignore_eos so is the use


def burst_across(world: World, gateway, key: str, n: int = 50, max_tokens: int = 8, stream: bool = False):
    """`n` concurrent requests, alternating between the two gateway processes: (statuses, usages of the admitted).
    Streams are held open (unread) until every request has its answer, so none frees a slot meanwhile."""
    async def run():
        bases = [world.appliance.v1, gateway.v1]
        clients = [openai.AsyncOpenAI(base_url=b, api_key=key, max_retries=0, timeout=120) for b in bases]
        held = []

        async def one(i: int):
            try:
                out = await clients[i % 2].completions.create(model=world.model, prompt=TOKEN_PROMPT,
                                                              max_tokens=max_tokens, stream=stream,
                                                              extra_body={"ignore_eos": True})
                if stream:
                    held.append(out)
                    return 200, None
                return 200, out.usage.total_tokens
            except openai.RateLimitError as exc:
                return exc.status_code, None

        results = await asyncio.gather(*[one(i) for i in range(n)])
        for s in held:
            await s.close()
        for c in clients:
            await c.close()
        return [r[0] for r in results], [r[1] for r in results if r[1] is not None]

    return asyncio.run(run())


@pytest.mark.parametrize("quota, limit", [("rpm", 10), ("tpm", 100), ("monthly_tokens", 100),
                                          ("max_concurrency", 5)])
def test_fifty_concurrent_requests_across_two_gateways_never_exceed_the_limit(world: World, second_gateway,
                                                                                quota, limit):
    key = key_with(**{quota: limit})
    per_request = len(TOKEN_PROMPT) + 8
    statuses, used = burst_across(world, second_gateway, key, stream=quota == "max_concurrency",
                                  max_tokens=400 if quota == "max_concurrency" else 8)
    admitted = statuses.count(200)
    print(f"{quota}={limit}: 50 requests over 2 gateway processes, admitted {admitted}, refused "
          f"{statuses.count(429)}, tokens used {sum(used)}")
    assert admitted + statuses.count(429) == 50
    if quota == "rpm":
        assert admitted == limit
    elif quota == "max_concurrency":
        assert admitted == limit  # every admitted stream is still open when the last answer comes
    else:
        assert sum(used) <= limit and admitted == limit // per_request  # each uses exactly its reservation
