"""An encoder replica's internal server: POST /embed (protocol.py), GET /health, GET /metrics."""
from __future__ import annotations

from typing import Any

from appliance.runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from appliance.runtime.protocol import ErrorBody
from appliance.runtime.replica_auth import authorized
from appliance.runtime.server_app import UNAUTHORIZED, BadRequest, ClientGone, Receive, Scope, Send, _error, _json
from appliance.runtime.server_app import _internal_error, _lifespan, _read_json, log

from .model import EmbedError
from .protocol import EmbedRequest, EmbedResult
from .runner import EncoderRunner

MAX_INPUTS = 2048  # OpenAI's limit per request


class EncoderApp:
    """ASGI app. `runner` is None while the model loads (health answers 503, embed 503)."""

    kind = "encoder"

    def __init__(self, served_model_name: str, secret: str | None = None) -> None:
        self.served_model_name = served_model_name
        self.secret = secret.encode() if secret else None  # as ReplicaApp: every route needs it
        self.runner: EncoderRunner | None = None
        self.info: dict[str, Any] = {}
        self.load_error: str | None = None

    def drain(self) -> None:
        """Nothing to drain: an embed request is one exchange, which uvicorn's graceful shutdown waits for."""

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
            if route == ("POST", "/embed"):
                await self.embed(receive, send)
            elif route == ("GET", "/health"):
                await self.health(send)
            elif route == ("GET", "/metrics"):
                await self.metrics(send)
            elif route == ("POST", "/generate"):
                raise BadRequest(f"{self.served_model_name} is an embedding model: it serves /embed, not "
                                 f"generation", "model", code="wrong_model_kind")
            else:
                await _error(send, 404, ErrorBody(f"no route {scope['path']} on an encoder replica",
                                                  code="not_found"))
        except BadRequest as exc:
            await _error(send, exc.status, exc.body())
        except ClientGone:
            return
        except Exception:  # a bug, not the caller's input: logged, never a traceback on the wire
            log.exception("encoder replica: %s %s failed", scope["method"], scope["path"])
            await _internal_error(send)

    def _require_runner(self) -> EncoderRunner:
        if self.runner is None:
            raise BadRequest("the model is still loading", None, status=503)
        return self.runner

    async def health(self, send: Send) -> None:
        if self.runner is None:
            body = {"status": "failed" if self.load_error else "loading", "model": self.served_model_name,
                    "kind": self.kind}
            if self.load_error:
                body["error"] = self.load_error
            await _json(send, 503, body)
            return
        await _json(send, 200, {"status": "ok", "kind": self.kind, "model": self.served_model_name,
                                "in_flight": self.runner.num_in_flight, **self.info})

    async def metrics(self, send: Send) -> None:
        body = self._require_runner().metrics.render()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", METRICS_CONTENT_TYPE.encode())]})
        await send({"type": "http.response.body", "body": body})

    async def embed(self, receive: Receive, send: Send) -> None:
        runner = self._require_runner()
        req = self._parse(await _read_json(receive))
        model = runner.model
        try:
            model.check_dimensions(req.dimensions)
            batch = [model.tokenize(item) if isinstance(item, str) else item for item in req.input]
            for i, ids in enumerate(batch):
                model.check(ids, i)
        except EmbedError as exc:
            raise BadRequest(str(exc), exc.param, code=exc.code) from None
        try:
            vectors = await runner.embed(batch, req.dimensions)
        except Exception as exc:  # noqa: BLE001 - the forward failed: the gateway answers 503, never a hang
            raise BadRequest(f"encoder error: {type(exc).__name__}: {exc}", None, status=503) from None
        await _json(send, 200, EmbedResult.of(req.request_id, sum(map(len, batch)), vectors).to_dict())

    @staticmethod
    def _parse(data: dict[str, Any]) -> EmbedRequest:
        if not isinstance(data.get("request_id"), str) or not data["request_id"]:
            raise BadRequest("request_id must be a non-empty string", "request_id")
        req = EmbedRequest.from_dict({"input": None, **data})  # a missing input is refused below
        if not isinstance(req.input, list) or not 1 <= len(req.input) <= MAX_INPUTS:
            raise BadRequest(f"input must be a list of 1 to {MAX_INPUTS} items", "input")
        for i, item in enumerate(req.input):
            ok = (isinstance(item, str) and item) or (isinstance(item, list) and item and all(
                isinstance(t, int) and not isinstance(t, bool) for t in item))
            if not ok:
                raise BadRequest(f"input[{i}] must be a non-empty string or a non-empty list of token ids", "input")
        if req.dimensions is not None and (not isinstance(req.dimensions, int) or isinstance(req.dimensions, bool)
                                           or req.dimensions < 1):
            raise BadRequest("dimensions must be a positive integer", "dimensions")
        return req


def build_encoder(model: str, device: str, served_model_name: str, **kwargs: Any) -> tuple[EncoderRunner, dict]:
    """Load the encoder and start its batching thread; returns (runner, facts for /health)."""
    from .metrics import EncoderMetrics
    from .model import EncoderModel

    if device == "neuron":
        raise ValueError("encoder (embedding) models run on cpu or cuda; deploy this model with --device cpu")
    encoder = EncoderModel(model, device=device, dtype=kwargs.get("dtype") or "float32")
    runner = EncoderRunner(encoder, EncoderMetrics(served_model_name),
                           max_batch_tokens=int(kwargs.get("max_num_batched_tokens") or 8192))
    info = encoder.info
    facts = {"max_model_len": info.max_input_tokens, "dimensions": info.dimensions, "matryoshka": info.matryoshka,
             "device": device}
    return runner, facts
