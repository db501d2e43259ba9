"""What every tool-call parser shares: the call it finds, and how a family's output is split into content and
calls, whole or while it streams."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from .scan import PartialObject, scan_object, skip_ws


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class PartialCall:
    name: str | None = None
    arguments: str = ""  # raw JSON text so far
    done: bool = False  # the call's JSON is complete


@dataclass
class Parsed:
    content: str  # text before the first call (all of it when there is no call)
    calls: list[PartialCall] = field(default_factory=list)
    held: int = 0  # streaming: this many trailing characters may begin a call; hold them back
    broken: bool = False  # the text after the marker is not a call after all
    started: bool = False  # the marker was found: what follows it is not content


def marker_prefix_len(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def call_of(obj: PartialObject, args_keys: tuple[str, ...]) -> PartialCall:
    call = PartialCall()
    raw_name = obj.members.get("name")
    if raw_name is not None and raw_name[1]:
        name = json.loads(raw_name[0])
        call.name = name if isinstance(name, str) else None
    for key in args_keys:
        if key in obj.members:
            call.arguments = obj.members[key][0]
            break
    call.done = obj.end is not None
    return call


class ToolParser:
    """One model family's tool-call syntax. Subclasses set `name`, `marker` and `args_keys`, and implement
    `parse_calls` (the text from the marker on) and `grammar` (the Lark grammar that forces one or more calls)."""

    name = ""
    marker = ""
    args_keys: tuple[str, ...] = ("arguments",)
    skip_special_tokens = True  # False where the marker is a special token the text must keep

    def parse(self, text: str) -> Parsed:
        start = text.find(self.marker)
        if start < 0:
            return Parsed(text, held=marker_prefix_len(text, self.marker))
        parsed = self.parse_calls(text, start)
        parsed.content, parsed.started = text[:start], True
        return parsed

    def parse_calls(self, text: str, start: int) -> Parsed:
        raise NotImplementedError

    def _objects(self, text: str, i: int, separator: str | None, closer: str | None) -> Parsed:
        """Objects from text[i], separated by `separator` (skipping whitespace), up to `closer` if given."""
        parsed = Parsed("")
        while True:
            i = skip_ws(text, i)
            if i >= len(text):
                return parsed
            obj = scan_object(text, i)
            if obj.broken:
                parsed.broken = True
                return parsed
            parsed.calls.append(call_of(obj, self.args_keys))
            if obj.end is None:
                return parsed
            i = skip_ws(text, obj.end)
            if i >= len(text):
                return parsed
            if separator and text.startswith(separator, i):
                i += len(separator)
            elif closer and text.startswith(closer, i):
                return parsed
            elif not separator:
                continue

    def grammar(self, tools: list[dict[str, Any]], parallel: bool) -> str:
        raise NotImplementedError

    def to_calls(self, parsed: Parsed, tools: list[dict[str, Any]]) -> list[PartialCall] | None:
        """The complete calls of a finished output, or None if it holds none or any is not a valid call of one of
        `tools` (then the output is returned as content)."""
        names = {t["function"]["name"] for t in tools}
        if parsed.broken or not parsed.calls:
            return None
        for call in parsed.calls:
            if not call.done or call.name not in names:
                return None
            try:
                if not isinstance(json.loads(call.arguments or "null"), dict):
                    return None
            except json.JSONDecodeError:
                return None
        return parsed.calls


def call_schema(tools: list[dict[str, Any]], args_key: str) -> dict[str, Any]:
    """A JSON schema for one call of any of `tools`: {"name": const, args_key: the function's parameters}."""
    from appliance.runtime.guided.llguidance_backend import close_objects

    options = []
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if fn.get("strict"):
            params = close_objects(params)
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, args_key: params},
                        "required": ["name", args_key], "additionalProperties": False})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": {"whitespace_flexible": False}}


def lark_json(schema: dict[str, Any]) -> str:
    return "%json " + json.dumps(schema)
