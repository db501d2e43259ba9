"""Hermes-style calls (Qwen2.5, Hermes 2/3): <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>."""
from __future__ import annotations

from typing import Any

from .base import Parsed, ToolParser, call_schema, lark_json
from .scan import scan_object, skip_ws
from .base import call_of

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesParser(ToolParser):
    name = "hermes"
    marker = OPEN

    def parse_calls(self, text: str, start: int) -> Parsed:
        parsed = Parsed("")
        i = start
        while text.startswith(OPEN, i):
            i = skip_ws(text, i + len(OPEN))
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
            if not text.startswith(CLOSE, i):
                if not CLOSE.startswith(text[i:]):
                    parsed.broken = True
                return parsed
            i = skip_ws(text, i + len(CLOSE))
        return parsed

    def grammar(self, tools: list[dict[str, Any]], parallel: bool) -> str:
        calls = 'call ("\\n" call)*' if parallel else "call"
        return (f"start: {calls}\n"
                f'call: "{OPEN}\\n" body "\\n{CLOSE}"\n'
                f"body: {lark_json(call_schema(tools, 'arguments'))}\n")
