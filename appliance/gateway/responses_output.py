"""The Responses API's answer: output items (a message with the text, then one function_call item per tool call)
as a Response object, or as the event stream vLLM emits, each event with its sequence_number.

A stream opens each item as its first text or call arrives: a message with ``response.output_item.added`` and
``response.content_part.added``, then ``response.output_text.delta``...; a call with ``response.output_item.added``
(its arguments empty), then ``response.function_call_arguments.delta``...; and closes it (``output_text.done``,
``content_part.done`` / ``function_call_arguments.done``, then ``output_item.done``) when the next one opens or the
answer ends. A streamed call whose arguments never became a JSON object (cut by max_output_tokens, or not a call
after all) ends "incomplete".
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .params import ParsedRequest
from .tools.stream import ToolStream, message_calls


def _event(kind: str, seq: int, payload: dict) -> str:
    data = json.dumps({"type": kind, "sequence_number": seq, **payload}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n"


def _part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(text: str) -> dict:
    return {"id": "msg_" + uuid.uuid4().hex, "type": "message", "role": "assistant", "status": "completed",
            "content": [_part(text)]}


def _function_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": "fc_" + uuid.uuid4().hex, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}


def _in_progress(item: dict) -> dict:
    """An item as announced by response.output_item.added: nothing written yet."""
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    return {**item, "status": "in_progress", "arguments": ""}


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def echoed_tools(body: dict) -> list[dict]:
    """The request's function tools as a Response echoes them (strict filled in: true unless false)."""
    return [{"type": "function", "name": t.get("name"), "description": t.get("description"),
             "parameters": t.get("parameters"), "strict": t.get("strict") is not False}
            for t in body.get("tools") or []]


class ResponsesBuilder:
    """Shapes one request's engine output as a Response object, or as Responses stream events (the same interface
    as responses.ResponseBuilder, so relay.Call runs it unchanged)."""

    def __init__(self, req: ParsedRequest, request_id: str, created: int, body: dict) -> None:
        self.req = req
        self.id = request_id
        self.created = created
        self.body = body
        self.tool_stream = ToolStream(req.tool_parser) if (req.tool_parser and req.stream) else None
        self.parts: list[str] = []  # whole: the model's text
        self.items: list[dict] = []  # the output items; streamed, the last may still be open
        self.open: dict | None = None  # stream: the item whose closing events are still to come
        self.finish_reason: str | None = None
        self.finished = False
        self.pending = ""  # stream: events settled by finish(), sent with the tail
        self.seq = 0
        self.completed_at: int | None = None

    @property
    def incomplete(self) -> bool:
        return self.finish_reason == "length"

    @property
    def text(self) -> str:
        """The text of the output's message items (the model's words, not its calls)."""
        return "".join(p["text"] for item in self.items if item["type"] == "message" for p in item["content"])

    def finish(self) -> None:
        """Settle the output items once the engine is done (runs once; the store and the answer both read them). A
        cut answer leaves its last item incomplete; an answer of nothing is one empty message."""
        if self.finished:
            return
        self.finished = True
        if not self.req.stream:
            text = "".join(self.parts)
            found = message_calls(self.req.tool_parser, text, self.req.tools) if self.req.tool_parser else None
            content, calls = (text, []) if found is None else found
            if content.strip() or not calls:
                self.items.append(_message(content))
            self.items += [_function_call(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls]
        elif not self.items:
            self.pending += self._open(_message(""))
        if self.incomplete:
            self.items[-1]["status"] = "incomplete"
        for item in self.items:  # streamed: a call that turned out not to be one stays unfinished
            if item["type"] == "function_call" and not _is_object(item["arguments"]):
                item["status"] = "incomplete"
        if self.req.stream:
            self.pending += self._close()

    # whole
    def add(self, delta: dict) -> None:
        self.parts.append(delta["text"])
        if delta.get("finish_reason"):
            self.finish_reason = delta["finish_reason"]

    def whole(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return self.response(prompt_tokens, completion_tokens)

    def response(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> dict:
        """The Response object: in progress (no tokens given) or finished."""
        done = prompt_tokens is not None
        usage = None
        if done:
            self.finish()
            if self.completed_at is None:
                self.completed_at = int(time.time())
            usage = {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": prompt_tokens + completion_tokens}
        b = self.body
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        fmt = (b.get("text") or {}).get("format") or {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "completed_at": self.completed_at if done else None,
            "background": False, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if done and self.incomplete else None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": None, "metadata": b.get("metadata") or {}, "model": self.req.model,
            "output": list(self.items) if done else [], "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"), "reasoning": None,
            "service_tier": "default", "store": b.get("store", True),
            "temperature": self.req.sampling.get("temperature", 1.0), "text": {"format": fmt},
            "tool_choice": b.get("tool_choice") or "auto", "tools": echoed_tools(b), "top_logprobs": 0,
            "top_p": self.req.sampling.get("top_p", 1.0), "truncation": "disabled", "usage": usage,
            "user": b.get("user"),
        }

    # stream
    def _next(self, kind: str, payload: dict) -> str:
        out = _event(kind, self.seq, payload)
        self.seq += 1
        return out

    def _where(self) -> dict:
        return {"item_id": self.open["id"], "output_index": len(self.items) - 1}

    def _open(self, item: dict) -> str:
        out = self._close()
        self.items.append(item)
        self.open = item
        out += self._next("response.output_item.added", {"output_index": len(self.items) - 1,
                                                          "item": _in_progress(item)})
        if item["type"] == "message":
            out += self._next("response.content_part.added", {**self._where(), "content_index": 0, "part": _part("")})
        return out

    def _close(self) -> str:
        item = self.open
        if item is None:
            return ""
        where = self._where()
        if item["type"] == "message":
            text = item["content"][0]["text"]
            out = self._next("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            out += self._next("response.content_part.done", {**where, "content_index": 0, "part": _part(text)})
        else:
            out = self._next("response.function_call_arguments.done", {**where, "name": item["name"],
                                                                         "arguments": item["arguments"]})
        self.open = None
        return out + self._next("response.output_item.done", {"output_index": where["output_index"], "item": item})

    def _text_delta(self, text: str) -> str:
        out = "" if self.open is not None and self.open["type"] == "message" else self._open(_message(""))
        self.open["content"][0]["text"] += text
        return out + self._next("response.output_text.delta", {**self._where(), "content_index": 0, "delta": text,
                                                                "logprobs": []})

    def stream_head(self) -> bytes:
        return (self._next("response.created", {"response": self.response()})
                + self._next("response.in_progress", {"response": self.response()})).encode()

    def chunk(self, delta: dict) -> str:
        if delta.get("finish_reason"):
            self.finish_reason = delta["finish_reason"]
        if self.tool_stream is None:
            return self._text_delta(delta["text"]) if delta["text"] else ""
        content, calls = self.tool_stream.feed(delta["text"], delta.get("finish_reason") is not None)
        out = self._text_delta(content) if content else ""
        for call in calls:
            if "id" in call:
                out += self._open(_function_call(call["id"], call["function"]["name"], ""))
            else:
                piece = call["function"]["arguments"]
                self.open["arguments"] += piece
                out += self._next("response.function_call_arguments.delta", {**self._where(), "delta": piece})
        return out

    def stream_error(self, error_body: dict) -> bytes:
        """A stream cut short (its replica failed): the error event; the Responses API sends no ``[DONE]``."""
        return b"data: " + json.dumps(error_body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"

    def stream_tail(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        final = self.response(prompt_tokens, completion_tokens)
        return (self.pending + self._next("response.completed", {"response": final})).encode()
