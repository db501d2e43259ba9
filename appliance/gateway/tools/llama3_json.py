"""Llama 3.1/3.2 JSON calls: {"name": ..., "parameters": {...}}, several separated by "; "."""
from __future__ import annotations

import re
from typing import Any

from .base import Parsed, ToolParser, call_schema, lark_json

_START = re.compile(r'\s*(<\|python_tag\|>)?\s*\{\s*"name"')


class Llama3JsonParser(ToolParser):
    name = "llama3_json"
    marker = '{"name"'
    args_keys = ("parameters", "arguments")

    def parse(self, text: str) -> Parsed:
        m = _START.match(text)
        if m is None:
            stripped = text.strip()
            pending = not stripped or '{"name"'.startswith(stripped) or '{ "name"'.startswith(stripped)
            return Parsed(text, held=len(text) if pending else 0)
        parsed = self._objects(text, text.index("{", m.start()), ";", None)
        parsed.content, parsed.started = "", True
        return parsed

    def grammar(self, tools: list[dict[str, Any]], parallel: bool) -> str:
        calls = 'call ("; " call)*' if parallel else "call"
        return f"start: {calls}\ncall: {lark_json(call_schema(tools, 'parameters'))}\n"
