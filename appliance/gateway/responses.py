"""OpenAI response objects for completions and chat, whole and as stream chunks, built from engine deltas."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .params import ParsedRequest


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


@dataclass
class Choice:
    """One completion's text, logprobs and finish reason, accumulated over the stream."""

    index: int
    text: str = ""
    logprobs: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    started: bool = False  # chat: the role has been sent


def completion_logprobs(entries: list[dict], offset: int) -> dict:
    tokens, token_logprobs, top, offsets = [], [], [], []
    for e in entries:
        tokens.append(e["token"])
        token_logprobs.append(e["logprob"])
        top.append({t["token"]: t["logprob"] for t in e.get("top") or []})
        offsets.append(offset)
        offset += len(e["token"])
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def chat_logprobs(entries: list[dict]) -> dict:
    def one(e: dict) -> dict:
        return {"token": e["token"], "logprob": e["logprob"], "bytes": list(e["token"].encode())}

    return {"content": [{**one(e), "top_logprobs": [one(t) for t in e.get("top") or []]} for e in entries]}


class ResponseBuilder:
    """Shapes one request's engine output as an OpenAI completion or chat completion."""

    def __init__(self, req: ParsedRequest, request_id: str, created: int) -> None:
        self.req = req
        self.id = request_id
        self.created = created
        self.chat = req.endpoint == "chat"
        self.object = "chat.completion" if self.chat else "text_completion"
        self.choices = [Choice(i) for i in range(req.n)]
        self._chunk_head = {"id": request_id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                            "created": created, "model": req.model}
        self.echo = req.prompt if (req.echo and req.prompt) else ""

    def add(self, index: int, text: str, logprobs: list[dict] | None, finish_reason: str | None) -> Choice:
        choice = self.choices[index]
        choice.text += text
        if logprobs:
            choice.logprobs.extend(logprobs)
        if finish_reason:
            choice.finish_reason = "stop" if finish_reason == "abort" else finish_reason
        return choice

    def chunk(self, index: int, text: str, logprobs: list[dict] | None, finish_reason: str | None) -> bytes:
        """Add a delta and return its SSE chunk."""
        choice = self.choices[index]
        offset = len(self.echo) + len(choice.text)
        self.add(index, text, logprobs, finish_reason)
        if self.echo and not choice.started:
            text = self.echo + text
        reason = self.choices[index].finish_reason
        if self.chat:
            delta: dict[str, Any] = {"content": text}
            if not choice.started:
                delta = {"role": "assistant", "content": text}
            lp = chat_logprobs(logprobs) if (self.req.logprobs and logprobs) else None
            body = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": reason}
        else:
            lp = completion_logprobs(logprobs, offset) if (self.req.logprobs and logprobs) else None
            body = {"index": index, "text": text, "logprobs": lp, "finish_reason": reason}
        choice.started = True
        chunk = {**self._chunk_head, "choices": [body]}
        if self.req.include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return sse({**self._chunk_head, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})

    def whole(self, prompt_tokens: int, completion_tokens: int) -> dict:
        choices = []
        for c in self.choices:
            if self.chat:
                lp = chat_logprobs(c.logprobs) if self.req.logprobs else None
                choices.append({"index": c.index, "message": {"role": "assistant", "content": c.text},
                                "logprobs": lp, "finish_reason": c.finish_reason or "stop"})
            else:
                lp = completion_logprobs(c.logprobs, len(self.echo)) if self.req.logprobs else None
                choices.append({"index": c.index, "text": self.echo + c.text, "logprobs": lp,
                                "finish_reason": c.finish_reason or "stop"})
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.req.model,
                "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}
