"""Guardrails through the live gateway: a tenant's or a deployment's content filter on input and output (block or
redact, every decision in the audit log), per-tenant caps on max_tokens and prompt tokens, and a plug-in filter."""
from __future__ import annotations

import re
import time

import openai
import pytest

from .conftest import World, committed, make_deployment, make_key, raw_post

pytestmark = pytest.mark.django_db

PROMPT = "The quick brown fox"
GREEDY = {"temperature": 0, "max_tokens": 24, "extra_body": {"ignore_eos": True}}
# The same greedy text, run long: a blocked request must be stopped by the gateway, not by max_tokens (a fast engine
# could finish 24 tokens before the gateway's abort reaches it)
GREEDY_LONG = {**GREEDY, "max_tokens": 240}


def tenant_with_policy(**policy) -> str:
    """A new tenant that may call `tiny`, with this guardrail policy; returns its key."""
    from appliance.guardrails.models import GuardrailPolicy

    def make():
        key, plaintext = make_key("guarded", ["tiny"])
        GuardrailPolicy.objects.create(tenant=key.tenant, **policy)
        return plaintext

    return committed(make)


def client_for(world: World, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)


def audit_rows(request_id: str, wait_s: float = 10) -> list:
    from appliance.tenancy.models import AuditLog

    deadline = time.monotonic() + wait_s
    while True:
        rows = list(AuditLog.objects.filter(object_type="gateway.request", object_id=request_id))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture(scope="module")
def plain_output(world: World) -> tuple[str, str]:
    """What the model writes for PROMPT (greedy) without any guardrail, and a word of it to filter on."""
    out = client_for(world, world.acme_key).completions.create(model=world.model, prompt=PROMPT, **GREEDY)
    text = out.choices[0].text
    words = [m.group(0) for m in re.finditer(r"(?<!\w)[A-Za-z]{2,}(?!\w)", text)]
    assert words, f"the model's output has no word to filter on: {text!r}"
    return text, words[len(words) // 2]


def test_a_denied_input_is_refused_with_content_filter_and_audited(world: World):
    client = client_for(world, tenant_with_policy(deny_terms=["secret plan"], check_output=False))
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, max_tokens=2,
                                       messages=[{"role": "user", "content": "Tell me the Secret Plan now"}])
    assert exc.value.body["code"] == "content_filter" and "denied term" in exc.value.message
    (row,) = audit_rows(exc.value.response.headers["x-request-id"])
    assert row.action == "input_block" and row.changes["findings"][0]["rule"] == "secret plan"
    assert row.changes["tenant"].startswith("guarded") and row.changes["model"] == world.model
    ok = client.chat.completions.create(model=world.model, max_tokens=2,
                                        messages=[{"role": "user", "content": "a secretive planner"}])
    assert ok.choices[0].finish_reason in ("length", "stop")


def test_pii_in_the_input_is_redacted_before_the_model_sees_it(world: World):
    client = client_for(world, tenant_with_policy(pii=["email", "card"], pii_action="redact"))
    out = client.completions.create(model=world.model, max_tokens=1, echo=True,
                                    prompt="mail ann@example.org, card 4111-1111-1111-1111, order 1234-5678-9012-3456")
    echoed = out.choices[0].text
    assert echoed.startswith("mail [EMAIL REDACTED], card [CARD REDACTED], order 1234-5678-9012-3456")  # no Luhn
    (row,) = audit_rows(out.id)
    assert row.action == "input_redact"
    assert sorted(f["kind"] for f in row.changes["findings"]) == ["card", "email"]
    assert "ann@example.org" not in str(row.changes) and "4111" not in str(row.changes)


def test_a_redacted_output_replaces_the_match_whole_and_streamed(world: World, plain_output):
    text, word = plain_output
    client = client_for(world, tenant_with_policy(deny_terms=[word], deny_action="redact", check_input=False))
    expected = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", "[REDACTED]", text, flags=re.IGNORECASE)
    whole = client.completions.create(model=world.model, prompt=PROMPT, **GREEDY)
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason == "length"
    chunks = list(client.completions.create(model=world.model, prompt=PROMPT, stream=True, **GREEDY))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "length"
    (row,) = audit_rows(whole.id)
    assert row.action == "output_redact" and row.changes["findings"][0]["rule"] == word.lower()
    assert audit_rows(chunks[0].id)[0].action == "output_redact"


def test_a_blocked_output_ends_with_finish_reason_content_filter_whole_and_streamed(world: World, plain_output):
    text, word = plain_output
    client = client_for(world, tenant_with_policy(deny_terms=[word], deny_action="block", check_input=False))
    before = text[:re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE).start()]
    whole = client.completions.create(model=world.model, prompt=PROMPT, **GREEDY_LONG)
    assert whole.choices[0].finish_reason == "content_filter" and whole.choices[0].text == before
    assert whole.usage.completion_tokens < GREEDY_LONG["max_tokens"]  # the engine stopped
    chat = client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": PROMPT}],
                                          temperature=0, max_tokens=64, extra_body={"ignore_eos": True})
    chunks = list(client.completions.create(model=world.model, prompt=PROMPT, stream=True, **GREEDY_LONG))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "".join(c.choices[0].text for c in chunks) == before
    (row,) = audit_rows(whole.id)
    assert row.action == "output_block" and row.changes["findings"][0]["rule"] == word.lower()
    assert audit_rows(chunks[0].id)[0].action == "output_block"
    assert word.lower() not in (chat.choices[0].message.content or "").lower()


def test_a_deployment_policy_applies_to_every_tenant_calling_it(world: World, plain_output):
    from appliance.guardrails.models import GuardrailPolicy

    text, word = plain_output

    def setup():
        dep = make_deployment("tiny-guarded", "tiny", world.engine.model_dir, world.engine)
        GuardrailPolicy.objects.create(deployment=dep, deny_terms=[word], deny_action="redact")

    committed(setup)
    out = client_for(world, world.acme_key).completions.create(model="tiny-guarded", prompt=PROMPT, **GREEDY)
    assert "[REDACTED]" in out.choices[0].text and audit_rows(out.id)[0].action == "output_redact"


def test_a_max_tokens_cap_refuses_more_and_lowers_the_default(world: World):
    client = client_for(world, tenant_with_policy(max_tokens=5, check_input=False, check_output=False))
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=world.model, prompt=PROMPT, max_tokens=6)
    assert exc.value.body["param"] == "max_tokens" and "cap of 5" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": PROMPT}],
                                       max_completion_tokens=9)
    assert exc.value.body["param"] == "max_completion_tokens"
    unset = client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "hi"}],
                                           extra_body={"ignore_eos": True})
    assert unset.usage.completion_tokens == 5  # the default 256 lowered to the cap


def test_a_prompt_token_cap_counts_as_the_model_does_and_uses_no_quota(world: World):
    acme = client_for(world, world.acme_key)
    length = acme.completions.create(model=world.model, prompt=PROMPT, max_tokens=1).usage.prompt_tokens
    chat = [{"role": "user", "content": "hi"}]
    chat_length = acme.chat.completions.create(model=world.model, messages=chat, max_tokens=1).usage.prompt_tokens
    assert chat_length > length  # the chat template's tokens count
    key = tenant_with_policy(max_prompt_tokens=length, check_input=False, check_output=False)

    def limit_requests():
        from appliance.tenancy.models import APIKey, Tenant

        Tenant.objects.filter(api_keys__prefix=key.split("-")[1]).update(rpm=2)
        return APIKey.objects.get(prefix=key.split("-")[1]).tenant.rpm

    assert committed(limit_requests) == 2
    client = client_for(world, key)
    for _ in range(3):  # refused before admission: these use none of the 2 requests a minute
        with pytest.raises(openai.BadRequestError) as exc:
            client.completions.create(model=world.model, prompt=PROMPT + " jumps", max_tokens=1)
        assert exc.value.body["code"] == "prompt_tokens_cap" and f"cap of {length} prompt tokens" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=chat, max_tokens=1)
    assert exc.value.body["param"] == "messages" and f"is {chat_length} tokens" in exc.value.message
    assert client.completions.create(model=world.model, prompt=PROMPT, max_tokens=1).usage.prompt_tokens == length


def test_a_plug_in_filter_named_by_its_dotted_path_runs_on_input(world: World):
    client = client_for(world, tenant_with_policy(filter="tests.gateway.guard_plugin.ShoutFilter"))
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=world.model, prompt="give me the LAUNCH CODES", max_tokens=1)
    assert exc.value.body["code"] == "content_filter" and "shouting" in exc.value.message
    assert client.completions.create(model=world.model, prompt="launch codes, quietly", max_tokens=1).choices


def test_a_policy_whose_filter_cannot_load_fails_closed(world: World):
    response = raw_post(world, "completions", {"model": world.model, "prompt": "x", "max_tokens": 1},
                        key=tenant_with_policy(filter="tests.gateway.no_such_module.Filter"))
    assert response.status_code == 503 and "cannot be imported" in response.json()["error"]["message"]
