"""Parse and validate OpenAI request bodies into what the engine takes. Every error names its parameter."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.runtime.sampling_params import SamplingParams

from . import conf
from .errors import APIError, invalid
from .tools.request import chat_message_tool_fields, parse_tools

CHAT_ROLES = {"system", "developer", "user", "assistant", "tool"}
MAX_PROMPTS = 256  # prompts in one completions request (each is its own engine request on one replica)
UNSUPPORTED = {"functions": "functions (use tools)", "function_call": "function calling (use tool_choice)",
               "logit_bias": "logit_bias", "suffix": "suffix"}
COMPLETIONS_UNSUPPORTED = {"tools": "tools on completions (use chat completions)",
                           "tool_choice": "tool choice on completions (use chat completions)"}
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ParsedRequest:
    endpoint: str  # "completions" | "chat"
    model: str
    stream: bool = False
    include_usage: bool = False
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    prompts: list[str | list[int]] | None = None  # completions: every prompt (prompt / prompt_token_ids: the only one)
    messages: list[dict[str, Any]] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    echo: bool = False
    logprobs: bool = False
    user: str | None = None
    tools: list[dict[str, Any]] | None = None  # chat: OpenAI tool definitions
    tool_choice: Any = "none"
    parallel_tool_calls: bool = True
    tool_parser: Any = None  # tools.ToolParser reading the output, once the model is known (tools.bind_parser)
    max_tokens_explicit: bool = True  # False: max_tokens is the default (a guardrail cap may lower it)
    max_tokens_param: str = "max_tokens"  # the field the client used for it

    @property
    def n(self) -> int:
        return self.sampling.get("n", 1)

    @property
    def num_prompts(self) -> int:
        return len(self.prompts) if self.prompts else 1

    @property
    def num_choices(self) -> int:
        """OpenAI's choices: n per prompt, prompt k's j-th at index k * n + j."""
        return self.num_prompts * self.n

    def estimate_tokens(self) -> int:
        """Prompt tokens (roughly, from the text) plus the most the completions may use: reserved at admission."""
        if self.prompts:
            prompt = sum(len(p) if isinstance(p, list) else len(p.encode()) // 3 + 1 for p in self.prompts)
        elif self.prompt_token_ids is not None:
            prompt = len(self.prompt_token_ids)
        elif self.prompt is not None:
            prompt = len(self.prompt.encode()) // 3 + 1
        else:
            prompt = sum(len(str(m.get("content", "")).encode()) // 3 + 4 for m in self.messages or [])
        return prompt + self.sampling["max_tokens"] * self.num_choices


def load_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise invalid("We could not parse the JSON body of your request. Send a JSON object.")
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def _typed(body: dict, name: str, types: tuple, what: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in types:
        raise invalid(f"'{name}' must be {what}, got {value!r}.", param=name)
    if not isinstance(value, types):
        raise invalid(f"'{name}' must be {what}, got {type(value).__name__}.", param=name)
    return value


def _number(body: dict, name: str, lo: float, hi: float, default: float | None = None) -> float | None:
    value = _typed(body, name, (int, float), "a number", default)
    if value is not None and not lo <= value <= hi:
        raise invalid(f"'{name}' must be between {lo} and {hi}, got {value!r}.", param=name)
    return value


def _integer(body: dict, name: str, lo: int, hi: int | None = None, default: int | None = None) -> int | None:
    value = _typed(body, name, (int,), "an integer", default)
    if value is not None and (value < lo or (hi is not None and value > hi)):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise invalid(f"'{name}' must be {bound}, got {value!r}.", param=name)
    return value


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or any(not isinstance(s, str) or not s for s in stop):
        raise invalid("'stop' must be a non-empty string or a list of up to 4 non-empty strings.", param="stop")
    return stop


def _response_format(body: dict) -> dict[str, Any] | None:
    """The guided-decoding spec for `response_format` (None for text), its schema checked by llguidance."""
    from appliance.runtime.guided.llguidance_backend import validate

    fmt = _typed(body, "response_format", (dict,), "an object", None)
    kind = (fmt or {}).get("type", "text")
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise invalid(f"'response_format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}.",
                      param="response_format.type")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise invalid("'response_format.json_schema' must be an object with a name and a schema.",
                      param="response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise invalid("'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'.",
                      param="response_format.json_schema.name")
    schema = spec.get("schema", {})
    strict = spec.get("strict")
    if not isinstance(schema, dict):
        raise invalid(f"Invalid schema for response_format '{name}': the schema must be a JSON object.",
                      param="response_format.json_schema.schema")
    if strict is not None and not isinstance(strict, bool):
        raise invalid("'response_format.json_schema.strict' must be a boolean.",
                      param="response_format.json_schema.strict")
    guided = {"type": "json_schema", "schema": schema, "strict": bool(strict)}
    try:
        validate(guided)
    except ValueError as exc:
        raise invalid(f"Invalid schema for response_format '{name}': {exc}",
                      param="response_format.json_schema.schema")
    return guided


def _common(body: dict, endpoint: str) -> ParsedRequest:
    unsupported = UNSUPPORTED if endpoint == "chat" else {**UNSUPPORTED, **COMPLETIONS_UNSUPPORTED}
    for name, what in unsupported.items():
        if body.get(name) not in (None, [], {}, ""):
            raise invalid(f"'{name}' is not supported by this server ({what}).", param=name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("You must provide a model parameter.", param="model")
    stream = bool(_typed(body, "stream", (bool,), "a boolean", False))
    options = _typed(body, "stream_options", (dict,), "an object", None)
    if options is not None and not stream:
        raise invalid("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
    include_usage = bool(_typed(options or {}, "include_usage", (bool,), "a boolean", False))
    user = _typed(body, "user", (str,), "a string", None)
    max_n = conf.max_n()
    sampling: dict[str, Any] = {
        "n": _integer(body, "n", 1, max_n, 1),
        "temperature": _number(body, "temperature", 0, 2, 1.0),
        "top_p": _number(body, "top_p", 0, 1, 1.0),
        "presence_penalty": _number(body, "presence_penalty", -2, 2, 0.0),
        "frequency_penalty": _number(body, "frequency_penalty", -2, 2, 0.0),
        "stop": _stop(body),
    }
    if sampling["top_p"] == 0:
        raise invalid("'top_p' must be greater than 0.", param="top_p")
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    if seed is not None:
        sampling["seed"] = seed
    # vLLM-style extensions
    for name, lo, hi in (("top_k", -1, 10**6), ):
        if body.get(name) is not None:
            sampling[name] = _integer(body, name, lo, hi)
    for name, lo, hi in (("min_p", 0, 1), ("repetition_penalty", 0.01, 10)):
        if body.get(name) is not None:
            sampling[name] = _number(body, name, lo, hi)
    if body.get("ignore_eos") is not None:
        sampling["ignore_eos"] = bool(_typed(body, "ignore_eos", (bool,), "a boolean"))
    guided = _response_format(body)
    if guided is not None:
        sampling["guided"] = guided
    return ParsedRequest(endpoint, model, stream=stream, include_usage=include_usage, sampling=sampling, user=user)


def _max_tokens(body: dict, names: tuple[str, ...], default: int, lo: int = 1) -> tuple[int, str]:
    for name in names:
        value = _integer(body, name, lo)
        if value is not None:
            return value, name
    return default, names[0]


def _check_sampling(req: ParsedRequest, max_tokens_name: str) -> None:
    try:
        SamplingParams(**req.sampling)
    except (ValueError, TypeError) as exc:
        name = str(exc).split(" ", 1)[0]
        raise invalid(str(exc), param=max_tokens_name if name == "max_tokens" else name)


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def _prompts(prompt: Any) -> list[str | list[int]]:
    """`prompt` as OpenAI takes it: a string, a list of strings, a list of token ids, or a list of such lists."""
    what = "'prompt' must be a non-empty string, a list of strings, a list of token ids or a list of token-id lists."
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif _is_token_ids(prompt):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt:
        prompts = prompt
    else:
        raise invalid(what, param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise invalid(f"'prompt' may hold at most {MAX_PROMPTS} prompts, got {len(prompts)}.", param="prompt")
    for k, p in enumerate(prompts):
        where = "'prompt'" if len(prompts) == 1 else f"prompt[{k}]"
        if isinstance(p, str):
            if not p:
                raise invalid(f"{where} must not be empty.", param="prompt")
        elif _is_token_ids(p):
            if any(t < 0 for t in p):
                raise invalid(f"{where}: token ids must be non-negative.", param="prompt")
        else:
            raise invalid(what, param="prompt")
    return prompts


def parse_completion(body: dict) -> ParsedRequest:
    req = _common(body, "completions")
    prompts = _prompts(body.get("prompt"))
    if len(prompts) == 1:
        if isinstance(prompts[0], str):
            req.prompt = prompts[0]
        else:
            req.prompt_token_ids = prompts[0]
    else:
        req.prompts = prompts
    req.echo = bool(_typed(body, "echo", (bool,), "a boolean", False))
    max_tokens, mt_name = _max_tokens(body, ("max_tokens",), 16, lo=0)
    req.max_tokens_explicit, req.max_tokens_param = body.get("max_tokens") is not None, mt_name
    if max_tokens == 0 and not req.echo:
        raise invalid("'max_tokens' must be at least 1 (0 is allowed with echo: the prompt alone).",
                      param="max_tokens")
    req.sampling["max_tokens"] = max_tokens
    logprobs = _integer(body, "logprobs", 0, 20)
    if logprobs is not None:
        req.sampling["logprobs"] = logprobs
        req.logprobs = True
        if req.echo:
            req.sampling["prompt_logprobs"] = logprobs
    best_of = _integer(body, "best_of", 1)
    if best_of is not None and best_of != req.n:
        raise invalid("'best_of' other than n is not supported.", param="best_of")
    _check_sampling(req, mt_name)
    return req


def _message_content(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"messages[{i}].content: only text content parts are supported.",
                              param=f"messages[{i}].content")
            parts.append(part["text"])
        return "".join(parts)
    raise invalid(f"messages[{i}].content must be a string or a list of text parts.", param=f"messages[{i}].content")


def parse_chat(body: dict) -> ParsedRequest:
    req = _common(body, "chat")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list.", param="messages")
    parsed = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = msg.get("role")
        if role not in CHAT_ROLES:
            raise invalid(f"messages[{i}].role must be one of {sorted(CHAT_ROLES)}, got {role!r}.",
                          param=f"messages[{i}].role")
        out = {"role": "system" if role == "developer" else role, "content": _message_content(msg.get("content"), i)}
        chat_message_tool_fields(msg, i, out)
        parsed.append(out)
    req.messages = parsed
    req.tools, req.tool_choice, req.parallel_tool_calls = parse_tools(body)
    default = conf.default_max_tokens()
    max_tokens, mt_name = _max_tokens(body, ("max_completion_tokens", "max_tokens"), default)
    req.max_tokens_explicit = any(body.get(n) is not None for n in ("max_completion_tokens", "max_tokens"))
    req.max_tokens_param = mt_name
    req.sampling["max_tokens"] = max_tokens
    logprobs = bool(_typed(body, "logprobs", (bool,), "a boolean", False))
    top = _integer(body, "top_logprobs", 0, 20)
    if top is not None and not logprobs:
        raise invalid("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
    if logprobs:
        req.sampling["logprobs"] = top or 0
        req.logprobs = True
    _check_sampling(req, mt_name)
    return req


def parse(endpoint: str, raw: bytes) -> ParsedRequest:
    body = load_body(raw)
    try:
        return parse_chat(body) if endpoint == "chat" else parse_completion(body)
    except APIError:
        raise
    except (TypeError, ValueError) as exc:
        raise invalid(f"Invalid request: {exc}")
