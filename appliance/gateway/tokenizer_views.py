"""GET /tokenizer_info, POST /tokenize, POST /detokenize at the server root, as vLLM serves them: evaluation
harnesses (lm-evaluation-harness's remote tokenizer) then need no tokenizer download.

Authenticated with an API key like /v1 (the same 401 and 404 answers). The model is the request's `model` (a body
field, or `?model=` for GET); without one, the only model the key may use (400 if it may use several: vLLM serves
one model, so harnesses send none). The call is relayed to a READY replica of that model, waking the deployment
like a completion would; it counts against no quota and writes no usage row (nothing is generated).
"""
from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .auth import authenticate
from .engine_client import EngineUnavailable, engine
from .errors import APIError, invalid, model_not_found, unavailable
from .params import load_body
from .routing import router


async def _model(request: HttpRequest, body: dict, allowed: frozenset[str]) -> str:
    name = body.get("model", request.GET.get("model"))
    if name is not None:
        if not isinstance(name, str) or not name:
            raise invalid("'model' must be a non-empty string.", param="model")
        return name
    names = [row[0] for row in await router.list_models(allowed)]
    if len(names) == 1:
        return names[0]
    if not names:
        raise APIError(404, "This key may use no model.", param="model", code="model_not_found")
    raise invalid(f"'model' is required: this key may use several models ({', '.join(sorted(names))}).",
                  param="model")


async def _relay(request: HttpRequest, method: str, path: str) -> HttpResponse:
    if request.method != method:
        resp = APIError(405, f"Method not allowed; use {method}.", type="invalid_request_error").response()
        resp["Allow"] = method
        return resp
    try:
        caller = await authenticate(request.headers.get("Authorization"))
        body = load_body(request.body) if method == "POST" else {}
        name = await _model(request, body, caller.allowed_models)
        route = await router.route(name)
        if route is None or route.model_name not in caller.allowed_models:
            raise model_not_found(name)
        target = await router.acquire(route)
        try:
            status, raw = await engine.call_raw(target, method, path, body if method == "POST" else None)
        except EngineUnavailable:
            router.forget(route, target)
            raise unavailable(f"No replica of `{name}` could take the request; retry shortly.", retry_after_s=5)
        finally:
            router.undispatched(target)
            await router.release(target)
    except APIError as exc:
        return exc.response()
    if status >= 500:
        return unavailable(f"The replica of `{name}` failed: {raw[:200].decode(errors='replace')}", 5).response()
    try:
        json.loads(raw)
    except ValueError:
        return APIError(502, "The replica answered something that is not JSON.").response()
    return HttpResponse(raw, status=status, content_type="application/json")


@csrf_exempt
async def tokenize(request: HttpRequest) -> HttpResponse:
    return await _relay(request, "POST", "/tokenize")


@csrf_exempt
async def detokenize(request: HttpRequest) -> HttpResponse:
    return await _relay(request, "POST", "/detokenize")


async def tokenizer_info(request: HttpRequest) -> HttpResponse:
    return await _relay(request, "GET", "/tokenizer_info")
