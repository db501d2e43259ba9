"""The request side of tool calling: `tools`, `tool_choice`, `parallel_tool_calls` checked, and the grammar that
enforces "required" or a named function once the model (and so its parser) is known."""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import invalid
from . import parser_for

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("none", "auto", "required")


def parse_tools(body: dict) -> tuple[list[dict] | None, Any, bool]:
    """(tools, tool_choice, parallel_tool_calls) of a chat request, validated; tools None when none are given."""
    from appliance.runtime.guided.llguidance_backend import validate

    tools, choice = body.get("tools"), body.get("tool_choice")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", param="parallel_tool_calls")
    if tools in (None, []):
        if choice not in (None, "none"):
            raise invalid("'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        return None, "none", parallel
    if not isinstance(tools, list) or len(tools) > 128:
        raise invalid("'tools' must be a list of at most 128 tools.", param="tools")
    names = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise invalid(f"{where} must be an object with type 'function' and a 'function' object.", param=where)
        fn = tool["function"]
        if not isinstance(fn.get("name"), str) or not _NAME.match(fn["name"]):
            raise invalid(f"{where}.function.name must be 1-64 letters, digits, '_' or '-'.",
                          param=f"{where}.function.name")
        if fn["name"] in names:
            raise invalid(f"{where}.function.name {fn['name']!r} is given twice.", param=f"{where}.function.name")
        names.add(fn["name"])
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise invalid(f"{where}.function.parameters must be a JSON Schema object.",
                              param=f"{where}.function.parameters")
            try:
                validate({"type": "json_schema", "schema": params, "strict": bool(fn.get("strict"))})
            except ValueError as exc:
                raise invalid(f"{where}.function.parameters is not a valid JSON Schema: {exc}",
                              param=f"{where}.function.parameters")
    if choice is None:
        choice = "auto"
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise invalid("'tool_choice' must be 'none', 'auto', 'required' or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}.", param="tool_choice")
        if name not in names:
            raise invalid(f"'tool_choice' names function {name!r}, which is not among the tools.",
                          param="tool_choice")
    elif choice not in CHOICES:
        raise invalid(f"'tool_choice' must be one of {list(CHOICES)} or a function, got {choice!r}.",
                      param="tool_choice")
    return tools, choice, parallel


def chat_message_tool_fields(msg: dict, i: int, out: dict) -> None:
    """Copy an assistant message's tool_calls (arguments decoded, as chat templates expect) or a tool message's
    tool_call_id into the message the engine renders."""
    role = out["role"]
    if role == "tool":
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"messages[{i}].tool_call_id must be a string: the id of the call it answers.",
                          param=f"messages[{i}].tool_call_id")
        out["tool_call_id"] = call_id
        return
    calls = msg.get("tool_calls")
    if role != "assistant" or calls in (None, []):
        return
    if not isinstance(calls, list):
        raise invalid(f"messages[{i}].tool_calls must be a list.", param=f"messages[{i}].tool_calls")
    rendered = []
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid(f"{where} must have a function with a name.", param=where)
        args = fn.get("arguments", "{}")
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except json.JSONDecodeError:
                raise invalid(f"{where}.function.arguments must be a JSON string.", param=f"{where}.function.arguments")
        rendered.append({"id": call.get("id") or "", "type": "function",
                         "function": {"name": fn["name"], "arguments": args}})
    out["tool_calls"] = rendered


def bind_parser(req: Any, parser_name: str) -> None:
    """Once the model is known: pick its parser; for "required" or a named function, set the grammar that forces
    the family's call syntax with arguments valid against the function's parameters."""
    if not req.tools or req.tool_choice == "none":
        return
    parser = parser_for(parser_name)
    if parser is None:
        raise invalid(f"Model `{req.model}` has no tool-call format registered, so it cannot take 'tools' with "
                      "tool_choice other than 'none'.", param="tools")
    req.tool_parser = parser
    if not parser.skip_special_tokens:
        req.sampling["skip_special_tokens"] = False
    if req.tool_choice == "auto":
        return
    if req.sampling.get("guided") is not None:
        raise invalid("'response_format' cannot be combined with a tool_choice that forces a call.",
                      param="response_format")
    tools = req.tools
    if isinstance(req.tool_choice, dict):
        tools = [t for t in tools if t["function"]["name"] == req.tool_choice["function"]["name"]]
    req.sampling["guided"] = {"type": "lark", "grammar": parser.grammar(tools, req.parallel_tool_calls)}
