"""POST /v1/embeddings: parse, admit against quotas, send to an encoder replica (POST /embed, in
appliance/runtime/encoder/protocol.py), answer in OpenAI's shape, and settle once: quota reconciled with the
tokens embedded, the replica's outstanding count released, a usage row written.

Embedding models are deployments whose checkpoint is an encoder (routing.Route.kind == "embedding"); a
generation request to one, or an embeddings request to a generative model, is a 400 before admission.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from appliance.runtime.encoder.protocol import EmbedRequest, EmbedResult

from . import metrics
from .auth import Caller, authenticate
from .engine_client import EngineRejected, EngineUnavailable, engine
from .errors import APIError, invalid, model_not_found, unavailable
from .params import load_body
from .quotas import Decision, Pick, get_quota_backend
from .relay import release_target
from .routing import Route, Target, router
from .usage import Usage, observe, record

log = logging.getLogger(__name__)
ENDPOINT = "embeddings"
MAX_INPUTS = 2048  # OpenAI's limit per request
ENCODING_FORMATS = ("float", "base64")
CLIENT_CLOSED = 499
MAX_ATTEMPTS = 3
UNKNOWN_MODEL = "-"


def not_for_generation(name: str, endpoint: str) -> APIError:
    """A completions or chat request to an embedding model."""
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    return invalid(f"The model `{name}` is an embedding model and does not support {path}; "
                   "use /v1/embeddings with it.", param="model")


def not_for_embeddings(name: str) -> APIError:
    return invalid(f"The model `{name}` is a text generation model and does not support /v1/embeddings; "
                   "use an embedding model.", param="model")


@dataclass
class EmbeddingsRequest:
    model: str
    inputs: list[str | list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None

    def estimate_tokens(self) -> int:
        """Reserved at admission: exact for token ids, an over-estimate from the bytes for text (reconciled)."""
        return sum(len(x) if isinstance(x, list) else len(x.encode()) // 3 + 2 for x in self.inputs)


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def parse_embeddings(raw: bytes) -> EmbeddingsRequest:
    """The request body, validated; APIError 400 naming the field otherwise. `user` is accepted and ignored."""
    body = load_body(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("You must provide a model parameter.", param="model")
    value = body.get("input")
    if isinstance(value, str):
        inputs: list = [value]
    elif _is_ids(value):
        inputs = [value]
    elif isinstance(value, list) and value and (all(isinstance(x, str) for x in value) or all(map(_is_ids, value))):
        inputs = value
    else:
        raise invalid("'input' must be a string, a list of strings, a list of token ids, or a list of token-id "
                      "lists, and not empty.", param="input")
    if len(inputs) > MAX_INPUTS:
        raise invalid(f"'input' may hold at most {MAX_INPUTS} items, got {len(inputs)}.", param="input")
    for i, item in enumerate(inputs):
        if isinstance(item, str) and not item:
            raise invalid(f"input[{i}] is an empty string.", param="input")
        if isinstance(item, list) and any(t < 0 for t in item):
            raise invalid(f"input[{i}]: token ids must be non-negative.", param="input")
    fmt = body.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if fmt not in ENCODING_FORMATS:
        raise invalid(f"'encoding_format' must be 'float' or 'base64', got {fmt!r}.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                   or dimensions < 1):
        raise invalid(f"'dimensions' must be a positive integer, got {dimensions!r}.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string.", param="user")
    return EmbeddingsRequest(model, inputs, fmt, dimensions)


def _rate_limited(decision: Decision) -> APIError:
    metrics.RATE_LIMITED.labels(decision.reason, decision.scope).inc()
    budget = decision.reason == "monthly_tokens"
    return APIError(429, decision.message, code="insufficient_quota" if budget else "rate_limit_exceeded",
                    type="insufficient_quota" if budget else "rate_limit_error", headers=decision.headers)


def response_body(req: EmbeddingsRequest, result: EmbedResult) -> dict[str, Any]:
    """OpenAI's list of embeddings: float lists, or per row base64 of little-endian float32."""
    matrix = result.vectors()
    if req.encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in matrix]
    else:
        rows = matrix.astype(np.float64).tolist()
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": req.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


class EmbeddingsCall:
    """One admitted embeddings request on its way through a replica; settle() runs once however it ends."""

    def __init__(self, caller: Caller, req: EmbeddingsRequest, route: Route, decision: Decision, request_id: str,
                 started: float) -> None:
        self.caller, self.req, self.route, self.decision = caller, req, route, decision
        self.request_id, self.started = request_id, started
        self.target: Target | None = None
        self.prompt_tokens = 0
        self.settled = False

    async def run(self) -> HttpResponse:
        metrics.INFLIGHT.labels(self.req.model).inc()
        status = CLIENT_CLOSED
        try:
            result = await self._embed()
            status = 200
        except APIError as exc:
            status = exc.status
            exc.headers = {**self.decision.headers, **exc.headers, "x-request-id": self.request_id}
            return exc.response()
        finally:
            await self.settle(status)
        response = HttpResponse(json.dumps(response_body(self.req, result)), content_type="application/json")
        response["x-request-id"] = self.request_id
        for name, value in self.decision.headers.items():
            response[name] = value
        return response

    async def _embed(self) -> EmbedResult:
        route, counted = self.route, self.decision.replica_id
        body = EmbedRequest(self.request_id, self.req.inputs, self.req.dimensions).to_dict()
        for _ in range(MAX_ATTEMPTS):
            self.target = target = await router.acquire(route, counted)
            counted = None
            try:
                result = EmbedResult(**await engine.call(target, "/embed", body))
            except EngineRejected as exc:
                err = exc.error
                raise APIError(exc.status if 400 <= exc.status < 500 else 400,
                               err.get("message") or "The request was rejected.",
                               param=err.get("param"), code=err.get("code"), type=err.get("type"))
            except EngineUnavailable as exc:
                log.warning("replica %s of %s unavailable: %s", target.replica_id, route.name, exc)
                await self._release_target()
                router.forget(route, target)
                fresh = await router.route(route.name, fresh=True)
                if fresh is None:
                    break
                route = fresh
            except (TypeError, ValueError) as exc:
                raise APIError(503, f"The model replica answered something unexpected: {exc}",
                               headers={"retry-after": "1"})
            else:
                self.prompt_tokens = result.prompt_tokens
                return result
        raise unavailable(f"No replica of `{self.route.name}` could take the request; retry shortly.",
                          retry_after_s=5)

    async def _release_target(self, at_finish: bool = False) -> None:
        await release_target(self, at_finish)

    async def settle(self, status: int) -> None:
        if self.settled:
            return
        self.settled = True
        try:
            await self._release_target(at_finish=True)
            if self.decision.ticket is not None:
                await get_quota_backend().finish(self.decision.ticket, self.prompt_tokens)
        except (Exception, asyncio.CancelledError):
            log.exception("settling %s", self.request_id)
        finally:
            metrics.INFLIGHT.labels(self.req.model).dec()
        await record(Usage(self.caller.tenant_id, self.caller.key_id, self.req.model, self.request_id, ENDPOINT,
                           status, self.prompt_tokens, 0, time.perf_counter() - self.started))


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        resp = APIError(405, "Method not allowed; use POST.", type="invalid_request_error").response()
        resp["Allow"] = "POST"
        return resp
    started = time.perf_counter()
    request_id = "embd-" + uuid.uuid4().hex
    caller = None
    model = UNKNOWN_MODEL
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        req = parse_embeddings(request.body)
        route = await router.route(req.model)
        if route is None or route.model_name not in caller.allowed_models:
            raise model_not_found(req.model)
        model = req.model
        if route.kind != "embedding":
            raise not_for_embeddings(req.model)
        pick = Pick([t.replica_id for t in route.targets], route.deployment_id) if route.targets else None
        decision = await get_quota_backend().admit(caller.scopes(), request_id, req.estimate_tokens(), pick)
        if not decision.admitted:
            raise _rate_limited(decision)
    except APIError as exc:
        latency = time.perf_counter() - started
        if caller is None:
            observe(model, ENDPOINT, exc.status, latency)
        else:
            await record(Usage(caller.tenant_id, caller.key_id, model if model != UNKNOWN_MODEL else "",
                               request_id, ENDPOINT, exc.status, latency_s=latency))
        response = exc.response()
        response["x-request-id"] = request_id
        return response
    return await EmbeddingsCall(caller, req, route, decision, request_id, started).run()
