"""Tool calls out of a model's text, whole or as OpenAI stream deltas: the name first, then argument deltas."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ToolParser, new_call_id


def message_calls(parser: ToolParser, text: str, tools: list[dict]) -> tuple[str, list[dict]] | None:
    """(content, tool_calls) of a finished output, or None when it holds no valid call."""
    parsed = parser.parse(text)
    calls = parser.to_calls(parsed, tools)
    if calls is None:
        return None
    return parsed.content, [{"id": new_call_id(), "type": "function",
                             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


@dataclass
class ToolStream:
    """One choice's streamed text, split into content deltas and tool-call deltas as it arrives."""

    parser: ToolParser
    text: str = ""
    content_sent: int = 0
    sent: list[list[Any]] = field(default_factory=list)  # per call: [id, argument characters sent]

    def feed(self, delta: str, final: bool) -> tuple[str, list[dict]]:
        """(content delta, tool_calls deltas) for the new text; on the final delta all held content comes out."""
        self.text += delta
        parsed = self.parser.parse(self.text)
        if parsed.started and not parsed.broken:
            limit = len(parsed.content)
        else:
            limit = len(self.text) - (0 if final or self.sent else parsed.held)
            if parsed.broken or final:
                limit = len(self.text)
        if self.sent:
            limit = min(limit, self.content_sent)  # content after calls started is not sent
        content = self.text[self.content_sent:limit] if limit > self.content_sent else ""
        self.content_sent = max(self.content_sent, limit)
        out: list[dict] = []
        if parsed.broken:
            return content, out
        for k, call in enumerate(parsed.calls):
            if call.name is None:
                break
            if k == len(self.sent):
                call_id = new_call_id()
                self.sent.append([call_id, 0])
                out.append({"index": k, "id": call_id, "type": "function",
                            "function": {"name": call.name, "arguments": ""}})
            new = call.arguments[self.sent[k][1]:]
            if new:
                out.append({"index": k, "function": {"arguments": new}})
                self.sent[k][1] = len(call.arguments)
        return content, out

    @property
    def called(self) -> bool:
        return bool(self.sent)
