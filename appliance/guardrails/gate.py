"""The hook the gateway calls for every request whose tenant or deployment has a guardrail policy (a request with
neither never reaches it): the caps on max_tokens and prompt tokens, then the input filter, before admission; the
output guard it returns filters what the model writes (output.py).
"""
from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from appliance.gateway.errors import APIError, invalid

from . import audit
from .filters import BLOCK, Finding, redact
from .output import OutputGuard
from .policy import Policy

CONTENT_FILTER = "content_filter"


def _refuse(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=CONTENT_FILTER)


def cap_max_tokens(req, policies: list[Policy]) -> None:
    """An explicit max_tokens above the cap is a 400; an unset one is lowered to the cap."""
    caps = [(p.spec.max_tokens, p.spec.owner) for p in policies if p.spec.max_tokens is not None]
    if not caps:
        return
    cap, owner = min(caps)
    wanted = req.sampling["max_tokens"]
    if wanted <= cap:
        return
    if not getattr(req, "max_tokens_explicit", True):
        req.sampling["max_tokens"] = cap
        return
    name = getattr(req, "max_tokens_param", "max_tokens")
    if req.endpoint == "responses":
        name = "max_output_tokens"  # the Responses API's own name for it
    raise invalid(f"'{name}' is {wanted}, above the cap of {cap} tokens set for {owner} (max_tokens).",
                  param=name, code="max_tokens_cap")


@lru_cache(maxsize=16)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def count_prompt_tokens(req, tokenizer_path: str) -> int:
    """The prompt's length in tokens, as the replica will count it (the chat template for messages)."""
    if req.prompts:
        return max(len(p) if isinstance(p, list) else count_text(tokenizer_path, p) for p in req.prompts)
    if req.prompt_token_ids is not None:
        return len(req.prompt_token_ids)
    if req.prompt is not None:
        return count_text(tokenizer_path, req.prompt)
    tok = _tokenizer(tokenizer_path)
    text = tok.apply_chat_template(req.messages, tools=req.tools or None, add_generation_prompt=True, tokenize=False)
    return len(tok.encode(text, add_special_tokens=False))


def count_text(tokenizer_path: str, text: str) -> int:
    return len(_tokenizer(tokenizer_path)(text).input_ids)


async def cap_prompt_tokens(req, policies: list[Policy], tokenizer_path: str) -> None:
    caps = [(p.spec.max_prompt_tokens, p.spec.owner) for p in policies if p.spec.max_prompt_tokens is not None]
    if not caps:
        return
    cap, owner = min(caps)
    try:
        count = await asyncio.to_thread(count_prompt_tokens, req, tokenizer_path)
    except Exception as exc:  # noqa: BLE001 - a template that cannot render: the replica would refuse it too
        raise invalid(f"The prompt could not be counted against the prompt-token cap: {exc}") from None
    if count > cap:
        param = "prompt" if req.messages is None else ("input" if req.endpoint == "responses" else "messages")
        each = " (each prompt)" if req.prompts else ""
        raise invalid(f"The prompt is {count} tokens, above the cap of {cap} prompt tokens{each} set for {owner} "
                      f"(max_prompt_tokens).", param=param, code="prompt_tokens_cap")


def _texts(req) -> list[tuple[str, Any, Any]]:
    """(text, container, key) for every text of the request's input, so a redaction can be written back."""
    if req.messages is not None:
        return [(m["content"], m, "content") for m in req.messages if isinstance(m.get("content"), str)]
    if req.prompts:
        return [(p, req.prompts, k) for k, p in enumerate(req.prompts) if isinstance(p, str)]
    if req.prompt is not None:
        return [(req.prompt, req, "prompt")]
    return []


async def filter_input(req, caller, policies: list[Policy], request_id: str) -> None:
    """Block (400 content_filter) or redact the request's text in place; either is written to the audit log."""
    filters = [p for p in policies if p.spec.check_input]
    if not filters:
        return
    redacted: list[Finding] = []
    for text, container, key in _texts(req):
        found = [f for p in filters for f in p.filter.scan(text, "input")]
        blocks = [f for f in found if f.action == BLOCK]
        if blocks:
            await audit.record(caller, req.model, request_id, "input", "block", blocks,
                               [p.spec.owner for p in filters], wait=True)
            kinds = ", ".join(sorted({f.kind if f.kind != "deny_term" else "a denied term" for f in blocks}))
            raise _refuse(f"The request was blocked by the content filter: the input contains {kinds}.",
                          param="prompt" if req.messages is None else "messages")
        if found:
            redacted += found
            if isinstance(container, (dict, list)):
                container[key] = redact(text, found)
            else:
                setattr(container, key, redact(text, found))
    if redacted:
        await audit.record(caller, req.model, request_id, "input", "redact", redacted, [p.spec.owner for p in filters])


async def check(req, caller, route, request_id: str) -> OutputGuard | None:
    """Caps and input filter for a request (APIError 400 if refused); the output guard, if output is filtered."""
    policies = [p for p in (caller.guardrail, route.guardrail) if p is not None]
    broken = next((p for p in policies if p.filter is None), None)
    if broken is not None:
        raise APIError(503, f"The guardrail policy of {broken.spec.owner} cannot be used: {broken.error}",
                       code="guardrail_unavailable", headers={"retry-after": "30"})
    cap_max_tokens(req, policies)
    await cap_prompt_tokens(req, policies, route.tokenizer)
    await filter_input(req, caller, policies, request_id)
    outputs = [p for p in policies if p.spec.check_output]
    return OutputGuard(outputs, req.num_choices) if outputs else None


async def finish(guard: OutputGuard, caller, model: str, request_id: str) -> None:
    """After the request: the output guard's decision in the audit log (nothing if it let everything through)."""
    if guard.action:
        await audit.record(caller, model, request_id, "output", guard.action, guard.findings,
                           guard.owners)
