"""The Responses API (POST /v1/responses): the request turned into a chat conversation that runs down the chat path
(same admission, relay, usage and metrics), the answer shaped as a Response object or as the event stream vLLM
emits, and stored responses that later requests continue (``previous_response_id``) or fetch (GET).

A stored response holds the conversation it answered (without ``instructions``, which do not carry over) and the
Response object as returned; it belongs to a tenant, and another tenant's id is answered like one that never was.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .errors import APIError, invalid
from .params import ParsedRequest, load_body, parse_chat

MESSAGE_ROLES = {"user", "system", "developer", "assistant"}
TEXT_PARTS = {"input_text", "output_text", "text"}
ACCEPTED = {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "store",
            "previous_response_id", "metadata", "user", "tools", "tool_choice", "parallel_tool_calls", "text",
            "truncation", "include", "background", "reasoning", "service_tier", "stream_options", "top_logprobs",
            "safety_identifier", "prompt_cache_key", "max_tool_calls", "prompt", "conversation"}
NOT_YET = "is not supported yet on /v1/responses"


def not_found(response_id: str, param: str | None = None) -> APIError:
    what = "Previous response" if param else "Response"
    return APIError(404, f"{what} with id '{response_id}' not found.", param=param,
                    code="previous_response_not_found" if param else "not_found")


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"'{where}.content' must be a string or a list of content parts.", param=f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise invalid(f"'{where}.content[{j}]': only text parts (input_text) are supported, got {kind!r}.",
                          param=f"{where}.content[{j}]")
        texts.append(part["text"])
    return "".join(texts)


def input_messages(value: Any) -> list[dict[str, str]]:
    """`input` as chat messages: a string is one user message; a list holds message items."""
    if isinstance(value, str):
        if not value:
            raise invalid("'input' must not be empty.", param="input")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise invalid("'input' must be a non-empty string or a non-empty list of messages.", param="input")
    messages = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind != "message":
            raise invalid(f"'{where}': items of type {kind!r} {NOT_YET}; send messages.", param=where)
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise invalid(f"'{where}.role' must be one of {sorted(MESSAGE_ROLES)}, got {role!r}.",
                          param=f"{where}.role")
        messages.append({"role": role, "content": _text_of(item.get("content"), where)})
    return messages


def _check_unsupported(body: dict) -> None:
    unknown = sorted(set(body) - ACCEPTED)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
    if body.get("tools"):
        raise invalid(f"'tools' {NOT_YET}: call /v1/chat/completions for tool calling.", param="tools")
    if body.get("tool_choice") not in (None, "none", "auto"):
        raise invalid(f"'tool_choice' other than 'none' or 'auto' {NOT_YET}.", param="tool_choice")
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if body.get("text") is not None and not isinstance(body.get("text"), dict):
        raise invalid("'text' must be an object.", param="text")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise invalid(f"'text.format' other than {{'type': 'text'}} {NOT_YET}.", param="text.format")
    for name, allowed in (("truncation", (None, "disabled")), ("background", (None, False)),
                          ("reasoning", (None,)), ("prompt", (None,)), ("conversation", (None,)),
                          ("top_logprobs", (None, 0))):
        if body.get(name) not in allowed:
            raise invalid(f"'{name}' {NOT_YET}.", param=name)
    if body.get("include") not in (None, []):
        raise invalid(f"'include' {NOT_YET}.", param="include")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or any(
            not isinstance(k, str) or len(k) > 64 or not isinstance(v, str) or len(v) > 512
            for k, v in metadata.items())):
        raise invalid("'metadata' must be an object of at most 16 string keys (64 characters) and string values "
                      "(512 characters).", param="metadata")


def parse_responses(raw: bytes) -> tuple[dict, list[dict[str, str]]]:
    """Validate a Responses body; returns it and its new input as messages (previous turns are added later)."""
    body = load_body(raw)
    _check_unsupported(body)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("You must provide a model parameter.", param="model")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise invalid("'instructions' must be a string.", param="instructions")
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise invalid("'previous_response_id' must be a string.", param="previous_response_id")
    for name in ("store", "stream", "parallel_tool_calls"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise invalid(f"'{name}' must be a boolean, got {body[name]!r}.", param=name)
    mot = body.get("max_output_tokens")
    if mot is not None and (isinstance(mot, bool) or not isinstance(mot, int) or mot < 1):
        raise invalid(f"'max_output_tokens' must be an integer of at least 1, got {mot!r}.", param="max_output_tokens")
    return body, input_messages(body.get("input"))


def chat_request(body: dict, conversation: list[dict[str, str]]) -> ParsedRequest:
    """The chat request the Responses request runs as."""
    messages = ([{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []) \
        + conversation
    chat: dict[str, Any] = {"model": body["model"], "messages": messages, "stream": bool(body.get("stream")),
                            "user": body.get("user")}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    req = parse_chat(chat)
    req.endpoint = "responses"
    return req


def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex


def _event(kind: str, seq: int, payload: dict) -> str:
    data = json.dumps({"type": kind, "sequence_number": seq, **payload}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n"


class ResponsesBuilder:
    """Shapes one request's engine output as a Response object, or as Responses stream events (the same interface
    as responses.ResponseBuilder, so relay.Call runs it unchanged)."""

    def __init__(self, req: ParsedRequest, request_id: str, created: int, body: dict) -> None:
        self.req = req
        self.id = request_id
        self.created = created
        self.body = body
        self.item_id = "msg_" + uuid.uuid4().hex
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.seq = 0
        self.completed_at: int | None = None

    # whole
    def add(self, delta: dict) -> None:
        self.parts.append(delta["text"])
        if delta.get("finish_reason"):
            self.finish_reason = delta["finish_reason"]

    def whole(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return self.response(prompt_tokens, completion_tokens)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def incomplete(self) -> bool:
        return self.finish_reason == "length"

    def message(self, done: bool) -> dict:
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        content = [self.part(self.text)] if done else []
        return {"id": self.item_id, "type": "message", "role": "assistant", "status": status, "content": content}

    @staticmethod
    def part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def response(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> dict:
        """The Response object: in progress (no tokens given) or finished."""
        done = prompt_tokens is not None
        if done and self.completed_at is None:
            self.completed_at = int(time.time())
        b = self.body
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        usage = None
        if done:
            usage = {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": prompt_tokens + completion_tokens}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "completed_at": self.completed_at if done else None,
            "background": False, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and self.incomplete else None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": None, "metadata": b.get("metadata") or {}, "model": self.req.model,
            "output": [self.message(True)] if done else [], "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"), "reasoning": None,
            "service_tier": "default", "store": b.get("store", True),
            "temperature": self.req.sampling.get("temperature", 1.0), "text": {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice") or "auto", "tools": [], "top_logprobs": 0,
            "top_p": self.req.sampling.get("top_p", 1.0), "truncation": "disabled", "usage": usage,
            "user": b.get("user"),
        }

    # stream
    def _next(self, kind: str, payload: dict) -> str:
        out = _event(kind, self.seq, payload)
        self.seq += 1
        return out

    def stream_head(self) -> bytes:
        where = {"output_index": 0}
        item = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return "".join([
            self._next("response.created", {"response": self.response()}),
            self._next("response.in_progress", {"response": self.response()}),
            self._next("response.output_item.added", {**where, "item": self.message(False)}),
            self._next("response.content_part.added", {**item, "part": self.part("")}),
        ]).encode()

    def chunk(self, delta: dict) -> str:
        self.add(delta)
        if not delta["text"]:
            return ""
        return self._next("response.output_text.delta", {"item_id": self.item_id, "output_index": 0,
                                                         "content_index": 0, "delta": delta["text"], "logprobs": []})

    def stream_tail(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        item = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return "".join([
            self._next("response.output_text.done", {**item, "text": self.text, "logprobs": []}),
            self._next("response.content_part.done", {**item, "part": self.part(self.text)}),
            self._next("response.output_item.done", {"output_index": 0, "item": self.message(True)}),
            self._next("response.completed", {"response": self.response(prompt_tokens, completion_tokens)}),
        ]).encode()
