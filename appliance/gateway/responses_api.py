"""The Responses API (POST /v1/responses), its request side: the body checked and turned into the chat request it
runs as (same admission, relay, usage and metrics): input items as chat messages (function calls and their outputs
as assistant tool_calls and tool messages), flat function tools as chat tools, `text.format` as `response_format`.
The answer is shaped by responses_output.py; stored responses live in responses_store.py.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from .errors import APIError, invalid
from .params import ParsedRequest, load_body, parse_chat

MESSAGE_ROLES = {"user", "system", "developer", "assistant"}
FORMAT_KEYS = ("name", "schema", "strict", "description")
# chat's names for what a Responses body calls otherwise, in error params and messages (longest first)
RENAMED = (("response_format.json_schema.", "text.format."), ("response_format", "text.format"), (".function.", "."))
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


def _text_of(content: Any, where: str, field: str = "content") -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"'{where}.{field}' must be a string or a list of content parts.", param=f"{where}.{field}")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise invalid(f"'{where}.{field}[{j}]': only text parts (input_text) are supported, got {kind!r}.",
                          param=f"{where}.{field}[{j}]")
        texts.append(part["text"])
    return "".join(texts)


def _function_call(item: dict, where: str) -> dict[str, Any]:
    """A function_call input item as a chat tool call (its arguments must be a JSON object's text)."""
    for name in ("call_id", "name", "arguments"):
        if not isinstance(item.get(name), str) or (name != "arguments" and not item[name]):
            raise invalid(f"'{where}.{name}' must be a string.", param=f"{where}.{name}")
    try:
        args = json.loads(item["arguments"] or "{}")
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise invalid(f"'{where}.arguments' must be the text of a JSON object.", param=f"{where}.arguments")
    return {"id": item["call_id"], "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]}}


def _function_output(item: dict, where: str) -> dict[str, Any]:
    """A function_call_output input item as a chat tool message."""
    if not isinstance(item.get("call_id"), str) or not item["call_id"]:
        raise invalid(f"'{where}.call_id' must be a string: the call_id of the call it answers.",
                      param=f"{where}.call_id")
    output = item.get("output")
    if not isinstance(output, str):
        output = _text_of(output, where, "output")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": output}


def input_messages(value: Any) -> list[dict[str, Any]]:
    """`input` as chat messages: a string is one user message; a list holds message items, function_call items
    (joined to the assistant turn before them, else one of their own) and function_call_output items."""
    if isinstance(value, str):
        if not value:
            raise invalid("'input' must not be empty.", param="input")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise invalid("'input' must be a non-empty string or a non-empty list of messages.", param="input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _function_call(item, where)
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            continue
        if kind == "function_call_output":
            messages.append(_function_output(item, where))
            continue
        if kind != "message":
            raise invalid(f"'{where}': items of type {kind!r} {NOT_YET}; send messages, function_call and "
                          "function_call_output items.", param=where)
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise invalid(f"'{where}.role' must be one of {sorted(MESSAGE_ROLES)}, got {role!r}.",
                          param=f"{where}.role")
        messages.append({"role": role, "content": _text_of(item.get("content"), where)})
    return messages


def _chat_tools(body: dict) -> dict[str, Any]:
    """`tools` (flat function tools; `strict` defaults to true, as OpenAI's), `tool_choice` and
    `parallel_tool_calls` as chat fields. Hosted tool types (web_search, file_search, ...) are refused."""
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("'tools' must be a list of function tools.", param="tools")
        out["tools"] = []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise invalid(f"'{where}': tools of type {kind!r} are not supported: this server runs no hosted "
                              "tools; only 'function' tools are.", param=f"{where}.type")
            strict = tool.get("strict")
            if strict is not None and not isinstance(strict, bool):
                raise invalid(f"'{where}.strict' must be a boolean.", param=f"{where}.strict")
            fn = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
            out["tools"].append({"type": "function", "function": {**fn, "strict": strict is not False}})
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise invalid("'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": "
                          f"...}}; got {json.dumps(choice)[:100]}.", param="tool_choice")
        choice = {"type": "function", "function": {"name": choice["name"]}}
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None:
        out["parallel_tool_calls"] = body["parallel_tool_calls"]
    return out


def _response_format(body: dict) -> dict[str, Any] | None:
    """`text.format` (flat in Responses) as chat's `response_format`; None for text."""
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise invalid("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {k: fmt[k] for k in FORMAT_KEYS if k in fmt}}
    return {"type": kind}


def _renamed(exc: APIError) -> APIError:
    """A chat error about a field the Responses body spells otherwise, in the Responses spelling."""
    for chat, responses in RENAMED:
        exc.message = exc.message.replace(chat, responses)
        if exc.param:
            exc.param = exc.param.replace(chat, responses)
    return exc


def _check_unsupported(body: dict) -> None:
    unknown = sorted(set(body) - ACCEPTED)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
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


def parse_responses(raw: bytes) -> tuple[dict, list[dict[str, Any]]]:
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


def chat_request(body: dict, conversation: list[dict[str, Any]]) -> ParsedRequest:
    """The chat request the Responses request runs as."""
    messages = ([{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []) \
        + conversation
    chat: dict[str, Any] = {"model": body["model"], "messages": messages, "stream": bool(body.get("stream")),
                            "user": body.get("user"), **_chat_tools(body)}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    response_format = _response_format(body)
    if response_format is not None:
        chat["response_format"] = response_format
    try:
        req = parse_chat(chat)
    except APIError as exc:
        raise _renamed(exc)
    if req.sampling.get("guided") is not None and req.tools and req.tool_choice not in ("none", "auto"):
        raise invalid("'text.format' cannot be combined with a tool_choice that forces a call.", param="text.format")
    req.endpoint = "responses"
    return req


def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex
