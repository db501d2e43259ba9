"""OpenAI-compatible Files and Batches endpoints, and async inference, authenticated by API key exactly as the
gateway does (``gateway.auth.authenticate``), tenant-scoped: another tenant's files, batches and requests answer
404 exactly like ones that don't exist. Errors are the gateway's OpenAI-shaped ``APIError``s."""
from __future__ import annotations

import functools
from typing import Any, Callable

from asgiref.sync import async_to_sync
from django.db import transaction
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from appliance.gateway.auth import authenticate
from appliance.gateway.errors import APIError
from appliance.gateway.params import load_body

from . import services
from .models import AsyncRequest, Batch, File


def api_view(*methods: str) -> Callable:
    """Allow `methods`, authenticate the Bearer key (request.caller), and answer any APIError in OpenAI's shape."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    allowed = ", ".join(methods)
                    raise APIError(405, f"Method not allowed; use {allowed}.", type="invalid_request_error",
                                   headers={"Allow": allowed})
                request.caller = async_to_sync(authenticate)(request.headers.get("Authorization"))
                return view(request, *args, **kwargs)
            except APIError as exc:
                return exc.response()

        return wrapper

    return decorate


def page(objects: list[dict]) -> JsonResponse:
    return JsonResponse({"object": "list", "data": objects, "has_more": False,
                         "first_id": objects[0]["id"] if objects else None,
                         "last_id": objects[-1]["id"] if objects else None})


def _file(request: HttpRequest, file_id: str) -> File:
    record = File.objects.filter(tenant_id=request.caller.tenant_id, pk=file_id).first()
    if record is None:
        raise services.not_found("file", file_id)
    return record


def _batch(request: HttpRequest, batch_id: str) -> Batch:
    batch = Batch.objects.filter(tenant_id=request.caller.tenant_id, pk=batch_id).first()
    if batch is None:
        raise services.not_found("batch", batch_id)
    return batch


@api_view("GET", "POST")
def files(request: HttpRequest) -> JsonResponse:
    tenant_id = request.caller.tenant_id
    if request.method == "GET":
        rows = File.objects.filter(tenant_id=tenant_id).order_by("-created_at")
        if request.GET.get("purpose"):
            rows = rows.filter(purpose=request.GET["purpose"])
        return page([f.to_openai() for f in rows[:1000]])
    upload = request.FILES.get("file")
    if upload is None:
        raise APIError(400, "A multipart 'file' field is required.", param="file")
    record = services.store_file(tenant_id, upload.name, upload.chunks(), request.POST.get("purpose", ""))
    return JsonResponse(record.to_openai())


@api_view("GET", "DELETE")
def file_detail(request: HttpRequest, file_id: str) -> JsonResponse:
    record = _file(request, file_id)
    if request.method == "DELETE":
        if Batch.objects.filter(input_file=record).exclude(status__in=Batch.FINISHED).exists():
            raise APIError(400, "The file is the input of a batch that has not finished.", param="file_id")
        services.delete_file(record)
        return JsonResponse({"id": file_id, "object": "file", "deleted": True})
    return JsonResponse(record.to_openai())


@api_view("GET")
def file_content(request: HttpRequest, file_id: str) -> FileResponse:
    record = _file(request, file_id)
    try:
        handle = open(record.path, "rb")
    except OSError:
        raise APIError(404, f"The content of file '{file_id}' is no longer available.", param="file_id",
                       code="not_found")
    return FileResponse(handle, content_type="application/jsonl", filename=record.filename)


@api_view("GET", "POST")
def batches(request: HttpRequest) -> JsonResponse:
    caller = request.caller
    if request.method == "GET":
        return page([b.to_openai() for b in Batch.objects.filter(tenant_id=caller.tenant_id)[:100]])
    from .tasks import run_batch

    data = load_body(request.body)
    with transaction.atomic():
        batch = services.create_batch(caller.tenant_id, caller.key_id, data.get("input_file_id"),
                                      data.get("endpoint"), data.get("completion_window", "24h"),
                                      data.get("metadata"))
        transaction.on_commit(lambda: run_batch.delay(batch.id))
    return JsonResponse(batch.to_openai())


@api_view("GET")
def batch_detail(request: HttpRequest, batch_id: str) -> JsonResponse:
    return JsonResponse(_batch(request, batch_id).to_openai())


@api_view("POST")
def batch_cancel(request: HttpRequest, batch_id: str) -> JsonResponse:
    return JsonResponse(services.cancel_batch(_batch(request, batch_id)).to_openai())


@api_view("POST")
def async_create(request: HttpRequest, endpoint: str) -> JsonResponse:
    from .tasks import run_async_request

    caller = request.caller
    body = load_body(request.body)
    services.check_request(f"/v1/{endpoint}", body, caller.allowed_models)
    with transaction.atomic():
        req = services.create_async_request(caller.tenant_id, caller.key_id, f"/v1/{endpoint}", body)
        transaction.on_commit(lambda: run_async_request.delay(req.id))
    return JsonResponse(req.to_openai(), status=202)


@api_view("GET", "DELETE")
def async_detail(request: HttpRequest, request_id: str) -> JsonResponse:
    req = AsyncRequest.objects.filter(tenant_id=request.caller.tenant_id, pk=request_id).first()
    if req is None:
        raise services.not_found("async request", request_id)
    if request.method == "DELETE" and req.status not in AsyncRequest.FINISHED:
        AsyncRequest.objects.filter(pk=req.pk).exclude(status__in=AsyncRequest.FINISHED).update(
            status=AsyncRequest.Status.CANCELLED, finished_at=timezone.now())
        req.refresh_from_db()
    return JsonResponse(req.to_openai())
