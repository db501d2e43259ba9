"""OpenAI's x-ratelimit-* headers on every admitted answer (whole, streamed, Responses) and on 429s, for the scope
with less room (tenant or key), so a client can pace itself before it is refused."""
from __future__ import annotations

import httpx
import openai
import pytest

from appliance.gateway.quotas import Limits, Scope, ScopeUsage, decide, format_reset

from .conftest import World, committed, make_key

pytestmark = pytest.mark.django_db
NAMES = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
         "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]


def new_key(key_quotas: dict, tenant_quotas: dict) -> str:
    from appliance.tenancy.services import create_api_key

    def make():
        key, _ = make_key("headers", ["tiny"], **tenant_quotas)
        return create_api_key(key.tenant, **key_quotas)[1]

    return committed(make)


def client_for(world: World, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)


def test_reset_formats_as_openai_does():
    assert [format_reset(s) for s in (0, 6, 59, 60, 61, 600)] == ["0s", "6s", "59s", "1m0s", "1m1s", "10m0s"]


def test_first_admitted_request_resets_a_full_window_later():
    scopes = [Scope("tenant", 1, Limits(rpm=10, tpm=1000))]
    decision = decide(scopes, [ScopeUsage(0, -1, 0, -1, 0, 0)], 0, 0, now=1000, ticket=None, estimate=20)
    assert decision.headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                                "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-limit-tokens": "1000",
                                "x-ratelimit-remaining-tokens": "980", "x-ratelimit-reset-tokens": "1m0s"}


def test_whole_answer_carries_the_tighter_scopes_numbers(world: World):
    client = client_for(world, new_key({"rpm": 100, "tpm": 500}, {"rpm": 3, "tpm": 100_000}))
    raw = client.completions.with_raw_response.create(model=world.model, prompt=[5, 6], max_tokens=4)
    h = raw.headers
    assert all(name in h for name in NAMES)
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("3", "2")  # the tenant's
    assert h["x-ratelimit-limit-tokens"] == "500" and int(h["x-ratelimit-remaining-tokens"]) == 500 - 6  # the key's
    assert h["x-ratelimit-reset-requests"] == "1m0s"
    second = client.chat.completions.with_raw_response.create(
        model=world.model, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert second.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")


def test_streamed_answers_send_the_headers_before_the_body(world: World):
    key = new_key({"rpm": 10, "tpm": 10_000}, {})
    body = {"model": world.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{world.appliance.v1}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "9"
        assert int(r.headers["x-ratelimit-remaining-tokens"]) < 10_000
        assert b"[DONE]" in r.read()
    client = client_for(world, key)
    raw = client.responses.with_raw_response.create(model=world.model, input="hi", max_output_tokens=2, stream=True)
    assert raw.headers["x-ratelimit-remaining-requests"] == "8"
    assert [e.type for e in raw.parse()][-1] == "response.completed"


def test_429_carries_the_headers_with_nothing_remaining(world: World):
    client = client_for(world, new_key({"tpm": 40}, {}))
    client.completions.create(model=world.model, prompt=[5, 6], max_tokens=30)
    with pytest.raises(openai.RateLimitError) as exc:
        client.responses.create(model=world.model, input="hi", max_output_tokens=39)
    h = exc.value.response.headers
    assert h["x-ratelimit-limit-tokens"] == "40" and int(h["x-ratelimit-remaining-tokens"]) <= 8
    assert int(h["retry-after"]) >= 1 and h["x-ratelimit-reset-tokens"].endswith("s")
    assert "x-ratelimit-limit-requests" not in h  # no request limit set: nothing to pace against
