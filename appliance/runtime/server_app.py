"""The replica's internal server as a small raw ASGI app: protocol.py's endpoints over an AsyncEngine."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable

from appliance.runtime.async_engine import AsyncEngine, EngineDeadError, RequestStream
from appliance.runtime.guided import InvalidGrammar
from appliance.runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from appliance.runtime.outputs import RequestOutput
from appliance.runtime.protocol import DeltaEvent, DoneEvent, ErrorBody, ErrorEvent, GenerateRequest, StartEvent
from appliance.runtime.protocol import encode_event
from appliance.runtime.replica_auth import authorized
from appliance.runtime.sampling_params import SamplingParams

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024
TOKENIZER_ROUTES = {("POST", "/tokenize"), ("POST", "/detokenize"), ("GET", "/tokenizer_info")}
_NDJSON = [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store")]
_JSON = [(b"content-type", b"application/json")]
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*$")


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class BadRequest(ValueError):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code

    def body(self) -> ErrorBody:
        kind = "invalid_request_error" if self.status < 500 else "service_unavailable"
        return ErrorBody(str(self), type=kind, param=self.param, code=self.code)


def param_of(exc: ValueError) -> str | None:
    """The field a ValueError names: by convention its message starts with the field name."""
    if isinstance(exc, BadRequest):
        return exc.param
    first = str(exc).split(" ", 1)[0]
    return first if _FIELD.match(first) else None


class ReplicaApp:
    """ASGI app. `engine` is None while the model loads (health answers 503, generate 503). With a `secret`, every
    route (health and metrics included) answers 401 to a call without ``Authorization: Bearer <secret>``."""

    def __init__(self, served_model_name: str, secret: str | None = None) -> None:
        self.served_model_name = served_model_name
        self.secret = secret.encode() if secret else None
        self.engine: AsyncEngine | None = None
        self.max_model_len: int | None = None
        self.info: dict[str, Any] = {}
        self.load_error: str | None = None
        self.sessions: set = set()  # open POST /session exchanges (server_session.ReplicaSession)

    def drain(self) -> None:
        """The server is shutting down: open sessions finish their requests and end rather than hold the graceful
        shutdown open until it times out."""
        for session in list(self.sessions):
            session.drain()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not authorized(scope, self.secret):
            await _error(send, 401, UNAUTHORIZED)
            return
        route = (scope["method"], scope["path"])
        try:
            if route == ("POST", "/generate"):
                await self.generate(receive, send)
            elif route == ("POST", "/session"):
                await self.session(receive, send)
            elif route == ("POST", "/abort"):
                await self.abort(receive, send)
            elif route in TOKENIZER_ROUTES:
                await self.tokenizer_call(route[1], receive, send)
            elif route == ("GET", "/health"):
                await self.health(send)
            elif route == ("GET", "/metrics"):
                await self.metrics(send)
            elif route == ("POST", "/profile"):
                await self.profile(receive, send)
            elif scope["path"] in ("/generate", "/session", "/abort", "/health", "/metrics", "/profile",
                                   *(path for _, path in TOKENIZER_ROUTES)):
                await _error(send, 405, ErrorBody(f"method {scope['method']} not allowed", code="method_not_allowed"))
            else:
                await _error(send, 404, ErrorBody(f"no route {scope['path']}", code="not_found"))
        except BadRequest as exc:
            await _error(send, exc.status, exc.body())
        except ClientGone:
            return
        except Exception:  # a bug, not the caller's input: logged here, never a traceback on the wire
            log.exception("replica: %s %s failed", scope["method"], scope["path"])
            await _internal_error(send)

    # ---- endpoints ---------------------------------------------------------------------------------------------

    async def health(self, send: Send) -> None:
        if self.engine is None:
            body = {"status": "failed" if self.load_error else "loading", "model": self.served_model_name}
            if self.load_error:
                body["error"] = self.load_error
            await _json(send, 503, body)
            return
        stats = self.engine.stats()
        body = {"status": "ok", "model": self.served_model_name, "max_model_len": self.max_model_len,
                "in_flight": self.engine.num_in_flight, **self.info}
        if stats is not None:
            body.update(num_running=stats.num_running, num_waiting=stats.num_waiting,
                        kv_blocks_used=stats.kv_blocks_used, kv_blocks_total=stats.kv_blocks_total)
        await _json(send, 200, body)

    async def metrics(self, send: Send) -> None:
        engine = self._require_engine()
        body = engine.metrics.render()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", METRICS_CONTENT_TYPE.encode())]})
        await send({"type": "http.response.body", "body": body})

    async def abort(self, receive: Receive, send: Send) -> None:
        engine = self._require_engine()
        data = await _read_json(receive)
        rid = data.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise BadRequest("request_id must be a non-empty string", "request_id")
        await _json(send, 200, {"request_id": rid, "aborted": await engine.abort(rid)})

    async def profile(self, receive: Receive, send: Send) -> None:
        from appliance.runtime.profiling import profile_engine

        engine = self._require_engine()
        data = await _read_json(receive)
        seconds = data.get("seconds", 5)
        out_dir = data.get("output_dir")
        if not isinstance(seconds, (int, float)) or not 0 < seconds <= 600:
            raise BadRequest("seconds must be a number in (0, 600]", "seconds")
        if not isinstance(out_dir, str) or not out_dir:
            raise BadRequest("output_dir must be a path", "output_dir")
        await _json(send, 200, await profile_engine(engine, float(seconds), out_dir))

    async def tokenizer_call(self, path: str, receive: Receive, send: Send) -> None:
        from appliance.runtime import tokenization

        engine = self._require_engine()
        data = await _read_json(receive) if path != "/tokenizer_info" else {}
        try:
            if path == "/tokenize":
                body = tokenization.tokenize(engine.tokenizer, data, self.max_model_len or 0)
            elif path == "/detokenize":
                body = tokenization.detokenize(engine.tokenizer, data)
            else:
                body = tokenization.tokenizer_info(engine.tokenizer)
        except ValueError as exc:
            raise BadRequest(str(exc), param_of(exc)) from None
        await _json(send, 200, body)

    async def generate(self, receive: Receive, send: Send) -> None:
        stream, prompt_tokens, params, start = await self.admit(await _read_json(receive))
        await self._stream(stream, start, params, receive, send)

    async def session(self, receive: Receive, send: Send) -> None:
        from appliance.runtime.server_session import ReplicaSession

        await ReplicaSession(self, self._require_engine(), send).run(receive)

    async def admit(self, data: dict[str, Any]) -> tuple[RequestStream, int, SamplingParams, StartEvent]:
        """Validate a GenerateRequest and add it to the engine: (its stream, prompt tokens, sampling params, the
        start event to send); BadRequest (400, or 503 if the engine has stopped) if it cannot run."""
        engine = self._require_engine()
        req, prompt, params = self._parse_generate(data)
        if params.guided is not None:  # compiled here, off the step loop; the engine's add_request hits the cache
            try:
                await asyncio.to_thread(engine.core.guided.compile, params.guided)
            except InvalidGrammar as exc:
                raise BadRequest(f"invalid grammar: {exc}", "response_format") from None
        try:
            stream = await engine.add_request(req.request_id, prompt, params, req.cache_salt, req.priority)
        except ValueError as exc:
            param = param_of(exc)
            if param == "prompt" and req.prompt is None:
                param = "prompt_token_ids" if req.prompt_token_ids is not None else "messages"
            raise BadRequest(str(exc), param, code=getattr(exc, "code", None)) from None
        except EngineDeadError as exc:
            raise BadRequest(str(exc), None, status=503) from None
        start = StartEvent(req.request_id, len(prompt))
        if req.echo_prompt:
            start.prompt_text = req.prompt if isinstance(req.prompt, str) else engine.tokenizer.decode(prompt)
        return stream, len(prompt), params, start

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _require_engine(self) -> AsyncEngine:
        if self.engine is None:
            raise BadRequest("the model is still loading", None, status=503)
        return self.engine

    def _parse_generate(self, data: dict[str, Any]) -> tuple[GenerateRequest, list[int], SamplingParams]:
        if not isinstance(data.get("request_id"), str) or not data["request_id"]:
            raise BadRequest("request_id must be a non-empty string", "request_id")
        req = GenerateRequest.from_dict(data)
        check_types(req)
        given = [k for k in ("prompt", "prompt_token_ids", "messages") if getattr(req, k) is not None]
        if len(given) != 1:
            raise BadRequest("exactly one of prompt, prompt_token_ids, messages is required", "prompt")
        if not isinstance(req.sampling, dict):
            raise BadRequest("sampling must be an object", "sampling")
        try:
            params = SamplingParams.from_dict(req.sampling)
        except TypeError as exc:
            raise BadRequest(f"sampling: {exc}", "sampling") from None
        except ValueError as exc:
            raise BadRequest(str(exc), param_of(exc)) from None
        return req, self._prompt_ids(req), params

    def _prompt_ids(self, req: GenerateRequest) -> list[int]:
        tok = self.engine.tokenizer if self.engine else None
        if req.prompt_token_ids is not None:
            ids = req.prompt_token_ids
            if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                raise BadRequest("prompt_token_ids must be a list of integers", "prompt_token_ids")
            return ids
        if req.prompt is not None:
            if not isinstance(req.prompt, str):
                raise BadRequest("prompt must be a string", "prompt")
            return encode_prompt(tok, req.prompt)
        return encode_messages(tok, req.messages, req.tools)

    async def _stream(self, stream: RequestStream, start_event: StartEvent, params: SamplingParams,
                      receive: Receive, send: Send) -> None:
        prompt_tokens = start_event.prompt_tokens
        watcher = asyncio.create_task(_abort_on_disconnect(receive, stream))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _NDJSON})
            start = encode_event(start_event)
            await send({"type": "http.response.body", "body": start, "more_body": True})
            want_logprobs = params.logprobs is not None
            while True:
                try:
                    batch = await stream.get_batch()
                except Exception as exc:
                    await send({"type": "http.response.body", "body": encode_event(engine_error(exc)),
                                "more_body": False})
                    return
                if not batch:
                    break
                chunk = b"".join(encode_event(e) for e in deltas_of(batch, want_logprobs))
                last = batch[-1]
                if last.finished:
                    body = chunk + encode_event(done_event(prompt_tokens, last))
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            stream.abort()


_TYPES: list[tuple[str, tuple[type, ...], str]] = [
    ("cache_salt", (str, type(None)), "a string"), ("priority", (int,), "an integer"),
    ("echo_prompt", (bool,), "a boolean"), ("tools", (list, type(None)), "a list of objects"),
]


def check_types(req: GenerateRequest) -> None:
    """BadRequest naming the first field of a GenerateRequest whose JSON type is wrong."""
    for name, types, what in _TYPES:
        value = getattr(req, name)
        if not isinstance(value, types) or (name == "priority" and isinstance(value, bool)):
            raise BadRequest(f"{name} must be {what}", name)


def deltas_of(batch: list[RequestOutput], want_logprobs: bool) -> list[DeltaEvent]:
    """One DeltaEvent per completion index with new tokens (or a finish reason) across the batch of outputs."""
    merged: dict[int, DeltaEvent] = {}
    for out in batch:
        for c in out.outputs:
            if not c.new_token_ids and not c.new_text and c.finish_reason is None:
                continue
            ev = merged.get(c.index)
            if ev is None:
                ev = merged[c.index] = DeltaEvent(c.index, "", [], [] if want_logprobs else None)
            ev.text += c.new_text
            ev.token_ids.extend(c.new_token_ids)
            if want_logprobs and c.logprobs and c.new_token_ids:
                ev.logprobs.extend(c.logprobs[-len(c.new_token_ids):])
            if c.finish_reason is not None:
                ev.finish_reason = c.finish_reason
        if out.prompt_logprobs is not None:
            ev = merged.get(0)
            if ev is None:
                ev = merged[0] = DeltaEvent(0, "", [], [] if want_logprobs else None)
            ev.prompt_logprobs = out.prompt_logprobs
    return [merged[i] for i in sorted(merged)]


def done_event(prompt_tokens: int, last: RequestOutput) -> DoneEvent:
    return DoneEvent(prompt_tokens, sum(len(c.token_ids) for c in last.outputs), metrics_of(last))


def engine_error(exc: BaseException) -> ErrorEvent:
    """The event that ends a stream whose request the engine failed mid-generation."""
    return ErrorEvent(ErrorBody(f"engine error: {exc}", type="server_error").to_dict()["error"])


def metrics_of(out: RequestOutput) -> dict[str, float]:
    m = out.metrics
    values = {"queue_s": m.queue_s, "ttft_s": m.ttft_s, "e2e_s": m.e2e_s}
    if m.inter_token_latencies:
        values["mean_itl_s"] = sum(m.inter_token_latencies) / len(m.inter_token_latencies)
    return {k: round(v, 6) for k, v in values.items() if v is not None}


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a plain prompt (the tokenizer's special tokens added, as transformers does)."""
    if not text:
        raise BadRequest("prompt must not be empty", "prompt")
    return list(tokenizer(text).input_ids)


def encode_messages(tokenizer: Any, messages: Any, tools: list[dict[str, Any]] | None = None) -> list[int]:
    """Token ids of a chat: the model's chat template (given the tools, if any) with the generation prompt
    appended."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise BadRequest(f"messages[{i}] must be an object with role and content", "messages")
    if not getattr(tokenizer, "chat_template", None):
        raise BadRequest("this model has no chat template; send a prompt instead", "messages")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise BadRequest("tools must be a list of objects", "tools")
    try:
        text = tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True,
                                             tokenize=False)
    except Exception as exc:
        raise BadRequest(f"messages could not be rendered with the chat template: {exc}", "messages") from None
    return list(tokenizer.encode(text, add_special_tokens=False))


async def _abort_on_disconnect(receive: Receive, stream: RequestStream) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.abort()
            return


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest("request body too large", None, status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _error(send: Send, status: int, error: ErrorBody) -> None:
    await _json(send, status, error.to_dict())


UNAUTHORIZED = ErrorBody("this replica answers only its gateway: missing or wrong replica credential",
                         type="authentication_error", code="invalid_replica_credential")


async def _internal_error(send: Send) -> None:
    """500 in the OpenAI shape; if the response had already started, the stream just ends."""
    try:
        await _error(send, 500, ErrorBody("internal error in the replica (see its log)", type="server_error"))
    except Exception:  # noqa: BLE001 - the response head was already sent: uvicorn closes the connection
        pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
