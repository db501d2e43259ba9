"""OpenAI-compatible Files and Batches endpoints, and async inference, authenticated by API key, tenant-scoped:
another tenant's files, batches and requests answer 404 exactly like ones that don't exist."""
from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.http import FileResponse, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from appliance.tenancy.services import authenticate_key

from . import services
from .models import AsyncRequest, Batch, File


def error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
          code: str | None = None) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status)


def not_found(kind: str, object_id: str) -> JsonResponse:
    return error(404, f"No {kind} found with id '{object_id}'", param="id", code="not_found")


def authenticated(view):
    """Resolve the Bearer API key to request.api_key / request.tenant, else a 401 in the OpenAI shape."""

    def wrapper(request: HttpRequest, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        key = authenticate_key(token) if token else None
        if key is None:
            return error(401, "Incorrect or missing API key.", "invalid_request_error", code="invalid_api_key")
        request.api_key, request.tenant = key, key.tenant
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return csrf_exempt(wrapper)


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise services.JobError(f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(data, dict):
        raise services.JobError("the request body must be a JSON object")
    return data


def job_errors(view):
    def wrapper(request: HttpRequest, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except services.JobError as exc:
            return error(exc.status, str(exc), param=exc.param, code=exc.code)

    wrapper.__name__ = view.__name__
    return wrapper


def page(objects: list[dict]) -> JsonResponse:
    return JsonResponse({"object": "list", "data": objects, "has_more": False,
                         "first_id": objects[0]["id"] if objects else None,
                         "last_id": objects[-1]["id"] if objects else None})


@authenticated
@job_errors
@require_http_methods(["GET", "POST"])
def files(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return page([f.to_openai() for f in File.objects.filter(tenant=request.tenant).order_by("-created_at")[:1000]])
    upload = request.FILES.get("file")
    if upload is None:
        raise services.JobError("a multipart 'file' field is required", param="file")
    record = services.store_file(request.tenant, upload.name, upload.chunks(), request.POST.get("purpose", ""))
    return JsonResponse(record.to_openai())


@authenticated
@require_http_methods(["GET", "DELETE"])
def file_detail(request: HttpRequest, file_id: str) -> JsonResponse:
    record = File.objects.filter(tenant=request.tenant, pk=file_id).first()
    if record is None:
        return not_found("file", file_id)
    if request.method == "DELETE":
        services.delete_file(record)
        return JsonResponse({"id": file_id, "object": "file", "deleted": True})
    return JsonResponse(record.to_openai())


@authenticated
@require_http_methods(["GET"])
def file_content(request: HttpRequest, file_id: str):
    record = File.objects.filter(tenant=request.tenant, pk=file_id).first()
    if record is None:
        return not_found("file", file_id)
    return FileResponse(open(record.path, "rb"), content_type="application/jsonl", filename=record.filename)


@authenticated
@job_errors
@require_http_methods(["GET", "POST"])
def batches(request: HttpRequest) -> JsonResponse:
    if request.method == "GET":
        return page([b.to_openai() for b in Batch.objects.filter(tenant=request.tenant)[:100]])
    from .tasks import run_batch

    data = json_body(request)
    with transaction.atomic():
        batch = services.create_batch(
            request.tenant, request.api_key, data.get("input_file_id"), data.get("endpoint"),
            data.get("completion_window", "24h"), data.get("metadata"),
        )
        transaction.on_commit(lambda: run_batch.delay(batch.id))
    return JsonResponse(batch.to_openai())


@authenticated
@require_http_methods(["GET"])
def batch_detail(request: HttpRequest, batch_id: str) -> JsonResponse:
    batch = Batch.objects.filter(tenant=request.tenant, pk=batch_id).first()
    return JsonResponse(batch.to_openai()) if batch else not_found("batch", batch_id)


@authenticated
@require_http_methods(["POST"])
def batch_cancel(request: HttpRequest, batch_id: str) -> JsonResponse:
    batch = Batch.objects.filter(tenant=request.tenant, pk=batch_id).first()
    if batch is None:
        return not_found("batch", batch_id)
    return JsonResponse(services.cancel_batch(batch).to_openai())


@authenticated
@job_errors
@require_http_methods(["POST"])
def async_create(request: HttpRequest, endpoint: str) -> JsonResponse:
    from .tasks import run_async_request

    with transaction.atomic():
        req = services.create_async_request(request.tenant, request.api_key, f"/v1/{endpoint}", json_body(request))
        transaction.on_commit(lambda: run_async_request.delay(req.id))
    return JsonResponse(req.to_openai(), status=202)


@authenticated
@require_http_methods(["GET", "DELETE"])
def async_detail(request: HttpRequest, request_id: str) -> JsonResponse:
    req = AsyncRequest.objects.filter(tenant=request.tenant, pk=request_id).first()
    if req is None:
        return not_found("async request", request_id)
    if request.method == "DELETE" and req.status not in AsyncRequest.FINISHED:
        AsyncRequest.objects.filter(pk=req.pk).update(status=AsyncRequest.Status.CANCELLED)
        req.refresh_from_db()
    return JsonResponse(req.to_openai())
