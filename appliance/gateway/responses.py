"""OpenAI response objects for completions and chat, whole and as SSE stream chunks, built from engine deltas.

Stream chunks of plain text (the common case) are written from pre-encoded templates: one ``json.dumps`` of the
new text per chunk, nothing else.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .params import ParsedRequest
from .tools.stream import ToolStream, message_calls


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class LastPart(bytes):
    """A stream's last part: the ASGI fast path sends it together with the end of the body (one write, not two)."""


@dataclass
class Choice:
    """One completion's output, accumulated (whole responses) or measured (streams)."""

    index: int
    parts: list[str] = field(default_factory=list)
    length: int = 0  # characters so far
    logprobs: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    started: bool = False  # stream: the first chunk (chat: with the role) has been sent


def completion_logprobs(entries: list[dict], offset: int, prompt: list[dict] | None = None) -> dict:
    """OpenAI's completions logprobs object. With echo, `prompt` (the prompt's own entries, the first without a
    logprob) comes first, its text offsets from 0; the completion's offsets start at `offset` (the echo's length)."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    prompt_offset = 0
    for e in prompt or []:
        tokens.append(e["token"])
        token_logprobs.append(e["logprob"])
        top.append(None if e["logprob"] is None else {t["token"]: t["logprob"] for t in e.get("top") or []})
        offsets.append(prompt_offset)
        prompt_offset += len(e["token"])
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


def _finish(reason: str | None) -> str | None:
    return "stop" if reason == "abort" else reason


class ResponseBuilder:
    """Shapes one request's engine output as an OpenAI completion or chat completion."""

    def __init__(self, req: ParsedRequest, request_id: str, created: int) -> None:
        self.req = req
        self.id = request_id
        self.created = created
        self.chat = req.endpoint == "chat"
        self.n = req.n
        self.choices = [Choice(i) for i in range(req.num_choices)]
        self.tool_streams = [ToolStream(req.tool_parser) for _ in range(req.n)] if req.tool_parser else None
        # with echo: per prompt, its text (token-id prompts: the replica's decoding, set_echo) and its own logprobs
        prompts = req.prompts or [req.prompt if req.prompt is not None else ""]
        self.echoes = [p if (req.echo and isinstance(p, str)) else "" for p in prompts]
        self.prompt_logprobs: list[list[dict] | None] = [None] * len(prompts)
        self._head = {"id": request_id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                      "created": created, "model": req.model}
        head = json.dumps(self._head, separators=(",", ":"))[:-1]
        self._prefix = f'data: {head},"choices":[{{"index":'
        middle = ',"delta":{"content":' if self.chat else ',"text":'
        self._middles = [f"{i}{middle}" for i in range(req.num_choices)]
        close = '},"logprobs":null,"finish_reason":null}]' if self.chat else ',"logprobs":null,"finish_reason":null}]'
        self._suffix = close + (',"usage":null}\n\n' if req.include_usage else "}\n\n")

    def set_echo(self, prompt_index: int, text: str) -> None:
        if self.req.echo:
            self.echoes[prompt_index] = text

    def _take_prompt_logprobs(self, delta: dict) -> None:
        if delta.get("prompt_logprobs") is not None:
            self.prompt_logprobs[delta["index"] // self.n] = delta["prompt_logprobs"]

    def add(self, delta: dict) -> None:
        """Accumulate a delta event for a whole (non-streamed) response."""
        self._take_prompt_logprobs(delta)
        choice = self.choices[delta["index"]]
        choice.parts.append(delta["text"])
        if delta.get("logprobs"):
            choice.logprobs.extend(delta["logprobs"])
        if delta.get("finish_reason"):
            choice.finish_reason = _finish(delta["finish_reason"])

    def chunk(self, delta: dict) -> str:
        """The SSE chunk for a delta event (a str: the caller encodes a batch of them at once)."""
        index, text = delta["index"], delta["text"]
        choice = self.choices[index]
        reason, logprobs = delta.get("finish_reason"), delta.get("logprobs")
        if self.tool_streams is not None:
            return self._tool_chunk(delta, choice, self.tool_streams[index])
        if choice.started and not reason and not (logprobs and self.req.logprobs):
            choice.length += len(text)
            return self._prefix + self._middles[index] + json.dumps(text) + self._suffix
        self._take_prompt_logprobs(delta)
        echo = self.echoes[index // self.n]
        offset = len(echo) + choice.length
        choice.length += len(text)
        prompt_lps = None
        if self.req.echo and not choice.started:
            text = echo + text
            prompt_lps = self.prompt_logprobs[index // self.n]
        if self.chat:
            delta_obj: dict[str, Any] = {"content": text} if choice.started else {"role": "assistant", "content": text}
            lp = chat_logprobs(logprobs) if (self.req.logprobs and logprobs) else None
            body = {"index": index, "delta": delta_obj, "logprobs": lp, "finish_reason": _finish(reason)}
        else:
            lp = None
            if self.req.logprobs and (logprobs or prompt_lps):
                lp = completion_logprobs(logprobs or [], offset, prompt_lps)
            body = {"index": index, "text": text, "logprobs": lp, "finish_reason": _finish(reason)}
        choice.started = True
        chunk = {**self._head, "choices": [body]}
        if self.req.include_usage:
            chunk["usage"] = None
        return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"

    def _tool_chunk(self, delta: dict, choice: Choice, tools: ToolStream) -> str:
        """A chat delta with tools in play: content while it is not a call, then the call's name and argument
        deltas (OpenAI's delta.tool_calls, with index); finish_reason "tool_calls" once a call was made."""
        reason, logprobs = delta.get("finish_reason"), delta.get("logprobs")
        content, calls = tools.feed(delta["text"], reason is not None)
        if reason == "stop" and tools.called:
            reason = "tool_calls"
        lp = chat_logprobs(logprobs) if (self.req.logprobs and logprobs) else None
        if not content and not calls and not reason and not lp and choice.started:
            return ""
        body: dict[str, Any] = {} if choice.started else {"role": "assistant"}
        if content or not calls:
            body["content"] = content
        if calls:
            body["tool_calls"] = calls
        choice.started = True
        chunk = {**self._head, "choices": [{"index": choice.index, "delta": body, "logprobs": lp,
                                            "finish_reason": _finish(reason)}]}
        if self.req.include_usage:
            chunk["usage"] = None
        return "data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False) + "\n\n"

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return sse({**self._head, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})

    def stream_head(self) -> bytes:
        """What a stream sends before the first delta (nothing for completions and chat)."""
        return b""

    def stream_tail(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """A finished stream's last part: the usage chunk if asked for, then ``[DONE]``."""
        tail = self.usage_chunk(prompt_tokens, completion_tokens) if self.req.include_usage else b""
        return tail + SSE_DONE

    def stream_error(self, error_body: dict) -> bytes:
        """A stream cut short (its replica failed): the OpenAI error event, then ``[DONE]`` as for any stream's end."""
        return sse(error_body) + SSE_DONE

    def whole(self, prompt_tokens: int, completion_tokens: int) -> dict:
        choices = []
        for c in self.choices:
            text = "".join(c.parts)
            if self.chat:
                lp = chat_logprobs(c.logprobs) if self.req.logprobs else None
                message: dict[str, Any] = {"role": "assistant", "content": text}
                reason = c.finish_reason or "stop"
                found = message_calls(self.req.tool_parser, text, self.req.tools) if self.req.tool_parser else None
                if found is not None:
                    message = {"role": "assistant", "content": found[0] or None, "tool_calls": found[1]}
                    reason = "tool_calls" if reason == "stop" else reason
                choices.append({"index": c.index, "message": message, "logprobs": lp, "finish_reason": reason})
            else:
                k = c.index // self.n
                echo = self.echoes[k]
                prompt_lps = self.prompt_logprobs[k] if self.req.echo else None
                lp = completion_logprobs(c.logprobs, len(echo), prompt_lps) if self.req.logprobs else None
                choices.append({"index": c.index, "text": echo + text, "logprobs": lp,
                                "finish_reason": c.finish_reason or "stop"})
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.req.model, "choices": choices,
                "usage": usage(prompt_tokens, completion_tokens)}
