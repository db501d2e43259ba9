"""The OpenAI-compatible API: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, and the Responses API
(POST /v1/responses, GET and DELETE /v1/responses/{id}) (async views)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from appliance.guardrails import gate as guardrails

from . import metrics, queueing, responses_api, responses_store
from .auth import authenticate
from .embeddings import not_for_generation
from .errors import APIError, model_not_found
from .params import parse
from .quotas import Headroom, Pick, get_quota_backend
from .relay import CLIENT_CLOSED, Call
from .responses_store import Prepare
from .routing import failed, router
from .tools.request import bind_parser
from .usage import Usage, observe, record

headroom = Headroom()
UNKNOWN_MODEL = "-"  # metrics label until the model is known to exist, so callers cannot inflate label sets


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def _method_not_allowed(allowed: str) -> HttpResponse:
    resp = APIError(405, f"Method not allowed; use {allowed}.", type="invalid_request_error").response()
    resp["Allow"] = allowed
    return resp


async def _completion(request: HttpRequest, endpoint: str, prepare: Prepare | None = None) -> HttpResponse:
    """`prepare` (the Responses API) turns the body into a chat request and sets up the call's answer."""
    if request.method != "POST":
        return _method_not_allowed("POST")
    started = time.perf_counter()
    prefix = {"chat": "chatcmpl-", "completions": "cmpl-"}
    request_id = prefix[endpoint] + uuid.uuid4().hex if endpoint in prefix else responses_api.new_response_id()
    caller = req = call = decision = None
    model = UNKNOWN_MODEL
    admitted = False
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        setup = None
        if prepare is None:
            req = parse(endpoint, request.body)
        else:
            req, setup = await prepare(caller, request.body, request_id)
        route = await router.route(req.model)
        if route is None or route.model_name not in caller.allowed_models:
            raise model_not_found(req.model)
        bind_parser(req, route.tool_parser)
        model = req.model
        if route.kind == "embedding":
            raise not_for_generation(req.model, endpoint)
        if route.failure:
            raise failed(route)
        guard = None
        if caller.guardrail is not None or route.guardrail is not None:
            guard = await guardrails.check(req, caller, route, request_id)
        backend = get_quota_backend()
        call = Call(caller, req, route, None, request_id, started)
        call.guard = guard
        if setup is not None:
            setup(call)
        pick = None
        if route.targets:
            if backend.remote and headroom.take(caller.key_id):
                target = router.pick_local(route)
                call.dispatch_early(target)  # admission's round trip then overlaps the engine's first token
                pick = Pick([target.replica_id], route.deployment_id)
            else:
                pick = Pick([t.replica_id for t in route.targets], route.deployment_id)
        queue, scopes, estimate = caller.queue(), caller.scopes(), req.estimate_tokens()
        decision = await backend.admit(scopes, request_id, estimate, pick, queue)
        if decision.queued:  # at the concurrency limit: wait in the tenant's queue (queueing.py)
            call.cancel_early()
            pick = Pick([t.replica_id for t in route.targets], route.deployment_id) if route.targets else None
            queued_at = time.perf_counter()
            try:
                decision = await queueing.wait(backend, scopes, request_id, estimate, pick, queue)
            except asyncio.CancelledError:  # the client went away while queued
                now = time.perf_counter()
                await record(Usage(caller.tenant_id, caller.key_id, model, request_id, endpoint, CLIENT_CLOSED,
                                   latency_s=now - started, queue_s=now - queued_at))
                raise
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
                               request_id, endpoint, exc.status, latency_s=latency,
                               queue_s=decision.waited_s if decision is not None else 0.0))
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


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    return await _completion(request, "responses", responses_store.prepare)


@csrf_exempt
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    """GET a stored response, or DELETE it; another tenant's id is a 404, as one that never was."""
    if request.method not in ("GET", "DELETE"):
        return _method_not_allowed("GET, DELETE")
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        if request.method == "GET":
            return _json(await responses_store.fetch(caller, response_id))
        await responses_store.delete(caller, response_id)
        return _json({"id": response_id, "object": "response", "deleted": True})
    except APIError as exc:
        return exc.response()


@csrf_exempt
async def unknown_route(request: HttpRequest) -> HttpResponse:
    """Any other /v1/ path: a 404 in OpenAI's words, so clients raise NotFoundError with a message."""
    return APIError(404, f"Invalid URL ({request.method} {request.path})", type="invalid_request_error").response()


def _model_object(name: str, created: int, status: str, message: str) -> dict:
    """OpenAI's model object, with the deployment's `status` (running, scaled-to-zero, pending, failed, ...); a
    failed one also carries `status_message`, the failure."""
    obj = {"id": name, "object": "model", "created": created, "owned_by": "appliance", "status": status}
    if status == "failed":
        obj["status_message"] = message
    return obj


@csrf_exempt  # a POST is a JSON 405, not Django's HTML CSRF page
async def models(request: HttpRequest) -> HttpResponse:
    """The models this key may use (never another tenant's)."""
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        caller = await authenticate(request.headers.get("Authorization"))
    except APIError as exc:
        return exc.response()
    rows = await router.list_models(caller.allowed_models)
    return _json({"object": "list", "data": [_model_object(*row) for row in rows]})


@csrf_exempt  # a POST is a JSON 405, not Django's HTML CSRF page
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
