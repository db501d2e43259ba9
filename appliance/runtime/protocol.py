"""Messages between the gateway and an engine replica's internal server (HTTP on loopback or a Unix socket).

Endpoints of the internal server:

    POST /generate   body: GenerateRequest as JSON. Before streaming, a request the engine rejects answers
                     HTTP 400 with ErrorBody (``{"error": {...}}``, OpenAI shape). Otherwise HTTP 200 and an
                     NDJSON stream (one JSON object per line): a StartEvent, then DeltaEvents, then a DoneEvent
                     (or an ErrorEvent if the engine fails mid-stream). Closing the connection aborts the request.
    POST /session    Many requests over one full-duplex exchange (the gateway's channel; server_session.py).
                     The request body (chunked, kept open) carries NDJSON commands:
                         {"op": "generate", ...GenerateRequest fields}  |  {"op": "abort", "request_id": str}
                     The response (HTTP 200, NDJSON) carries the events of /generate for every request, each with
                     the request id as its first member ({"id": str, "type": ...}), plus, for a generate the engine
                     refuses before streaming, {"id", "type": "rejected", "status", "error": {...}}. The events one
                     engine step produced for the session's requests arrive in one chunk. Ending the request body
                     ends the response once its requests have finished; closing the connection aborts them all.
    POST /abort      body: {"request_id": str}. Frees the request's KV blocks at once.
    POST /tokenize   {"prompt", "add_special_tokens"=true} or {"messages", "add_generation_prompt"=true,
                     "add_special_tokens"=false}, "return_token_strs"=false -> {"count", "max_model_len", "tokens",
                     "token_strs"} (vLLM's fields; tokenization.py)
    POST /detokenize {"tokens"} -> {"prompt"}
    GET  /tokenizer_info  the tokenizer's configuration (tokenizer_config.json's fields, "tokenizer_class", and the
                     eos/bos/pad tokens), as vLLM serves it
    GET  /health     200 {"status": "ok", "model": str, "max_model_len": int, ...}; 503 while loading.
    GET  /metrics    Prometheus text exposition of the engine's metrics.

Plain dataclasses with to_dict/from_dict; the wire format is JSON.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FinishReason = Literal["stop", "length", "abort"]


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class GenerateRequest:
    request_id: str
    prompt: str | None = None  # exactly one of prompt, prompt_token_ids, messages
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None  # chat: the engine applies the model's chat template
    tools: list[dict[str, Any]] | None = None  # chat: OpenAI tool definitions, rendered by the chat template
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingParams fields
    cache_salt: str | None = None  # per tenant: tenants never share prefix-cache blocks
    priority: int = 0  # lower runs first under the priority policy
    echo_prompt: bool = False  # the start event carries the prompt's text (decoded when given as token ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerateRequest":
        return _from_dict(cls, data)


@dataclass
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: list[dict[str, Any]] = field(default_factory=list)  # [{"token_id", "token", "logprob"}]


@dataclass
class StartEvent:
    request_id: str
    prompt_tokens: int
    type: str = "start"
    prompt_text: str | None = None  # with echo_prompt


@dataclass
class DeltaEvent:
    index: int  # which of the n completions
    text: str
    token_ids: list[int]
    logprobs: list[dict[str, Any]] | None = None  # TokenLogprob dicts, one per token id
    finish_reason: FinishReason | None = None
    type: str = "delta"
    # sampling.prompt_logprobs: on index 0's first delta, one TokenLogprob dict per prompt token (first logprob null)
    prompt_logprobs: list[dict[str, Any]] | None = None


@dataclass
class DoneEvent:
    prompt_tokens: int
    completion_tokens: int
    metrics: dict[str, float] = field(default_factory=dict)  # queue_s, ttft_s, e2e_s, mean_itl_s
    type: str = "done"


@dataclass
class ErrorBody:
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"error": asdict(self)}


@dataclass
class ErrorEvent:
    error: dict[str, Any]
    status: int = 500
    type: str = "error"


Event = StartEvent | DeltaEvent | DoneEvent | ErrorEvent
_EVENTS = {"start": StartEvent, "delta": DeltaEvent, "done": DoneEvent, "error": ErrorEvent}


def encode_event(event: Event) -> bytes:
    """One NDJSON line. Events hold only JSON values, so their own __dict__ serves (asdict's deep copy cost more
    than the rest of the encoding, once per token)."""
    import json

    return (json.dumps(vars(event), separators=(",", ":")) + "\n").encode()


def decode_event(line: bytes | str) -> Event:
    import json

    data = json.loads(line)
    return _from_dict(_EVENTS[data["type"]], data)
