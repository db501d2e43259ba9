"""The OpenAI-compatible API: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (async views)."""
from __future__ import annotations

import json
import time
import uuid

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import metrics
from .auth import authenticate
from .embeddings import not_for_generation
from .errors import APIError, model_not_found
from .params import parse
from .quotas import Headroom, Pick, get_quota_backend
from .relay import Call
from .routing import router
from .usage import Usage, observe, record

headroom = Headroom()
UNKNOWN_MODEL = "-"  # metrics label until the model is known to exist, so callers cannot inflate label sets


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def _method_not_allowed(allowed: str) -> HttpResponse:
    resp = APIError(405, f"Method not allowed; use {allowed}.", type="invalid_request_error").response()
    resp["Allow"] = allowed
    return resp


async def _completion(request: HttpRequest, endpoint: str) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed("POST")
    started = time.perf_counter()
    request_id = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex
    caller = req = call = None
    model = UNKNOWN_MODEL
    admitted = False
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        req = parse(endpoint, request.body)
        route = await router.route(req.model)
        if route is None or route.model_name not in caller.allowed_models:
            raise model_not_found(req.model)
        model = req.model
        if route.kind == "embedding":
            raise not_for_generation(req.model, endpoint)
        backend = get_quota_backend()
        call = Call(caller, req, route, None, request_id, started)
        pick = None
        if route.targets:
            if backend.remote and headroom.take(caller.key_id):
                target = router.pick_local(route)
                call.dispatch_early(target)  # admission's round trip then overlaps the engine's first token
                pick = Pick([target.replica_id], route.deployment_id)
            else:
                pick = Pick([t.replica_id for t in route.targets], route.deployment_id)
        decision = await backend.admit(caller.scopes(), request_id, req.estimate_tokens(), pick)
        headroom.note(caller.key_id, decision)
        if not decision.admitted:
            metrics.RATE_LIMITED.labels(decision.reason, decision.scope).inc()
            budget = decision.reason == "monthly_tokens"
            raise APIError(429, decision.message, code="insufficient_quota" if budget else "rate_limit_exceeded",
                           type="insufficient_quota" if budget else "rate_limit_error", headers=decision.headers)
        call.decision = decision
        admitted = True
    except APIError as exc:
        latency = time.perf_counter() - started
        if caller is None:
            observe(model, endpoint, exc.status, latency)
        else:
            await record(Usage(caller.tenant_id, caller.key_id, model if model != UNKNOWN_MODEL else "",
                               request_id, endpoint, exc.status, latency_s=latency))
        response = exc.response()
        response["x-request-id"] = request_id
        return response
    finally:
        if not admitted and call is not None:
            call.cancel_early()
    return await call.run()


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponse:
    return await _completion(request, "completions")


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await _completion(request, "chat")


def _model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "appliance"}


async def models(request: HttpRequest) -> HttpResponse:
    """The models this key may use (never another tenant's)."""
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        caller = await authenticate(request.headers.get("Authorization"))
    except APIError as exc:
        return exc.response()
    rows = await router.list_models(caller.allowed_models)
    return _json({"object": "list", "data": [_model_object(name, created) for name, created in rows]})


async def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        rows = await router.list_models(caller.allowed_models, name)
        if not rows:
            raise model_not_found(name)
    except APIError as exc:
        return exc.response()
    return _json(_model_object(*rows[0]))
