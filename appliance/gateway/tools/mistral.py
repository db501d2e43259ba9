"""Mistral calls: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...].

[TOOL_CALLS] is a special token in Mistral's tokenizers, so outputs keep special tokens (skip_special_tokens
false) when this parser reads them. An enforced call writes the marker as text, which decodes the same.
"""
from __future__ import annotations

from typing import Any

from .base import Parsed, ToolParser, call_schema, lark_json
from .scan import skip_ws

MARKER = "[TOOL_CALLS]"


class MistralParser(ToolParser):
    name = "mistral"
    marker = MARKER
    skip_special_tokens = False

    def parse_calls(self, text: str, start: int) -> Parsed:
        i = skip_ws(text, start + len(MARKER))
        if i >= len(text):
            return Parsed("")
        if text[i] != "[":
            return Parsed("", broken=True)
        return self._objects(text, i + 1, ",", "]")

    def grammar(self, tools: list[dict[str, Any]], parallel: bool) -> str:
        calls = 'call ("," call)*' if parallel else "call"
        return (f'start: "{MARKER}[" {calls} "]"\n'
                f"call: {lark_json(call_schema(tools, 'arguments'))}\n")
