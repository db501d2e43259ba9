"""Files, batches and async requests: validation, storage and the state machine. Views and tasks stay thin."""
from __future__ import annotations

import errno
import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.gateway.errors import APIError, invalid

from .models import AsyncRequest, Batch, BatchItem, File

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_BATCH_LINES = 50_000


def not_found(kind: str, object_id: Any, param: str = "id") -> APIError:
    """Identical for an object that does not exist and another tenant's."""
    return APIError(404, f"No {kind} found with id '{object_id}'.", param=param, code="not_found")


def files_dir() -> Path:
    path = Path(settings.APPLIANCE_HOME) / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_file(tenant_id: int, name: str, chunks: Iterable[bytes], purpose: str) -> File:
    """Store an uploaded file for `tenant_id` (streamed to disk; the row is written only once the file is)."""
    if purpose not in (File.Purpose.BATCH,):
        raise invalid(f"'purpose' must be 'batch', got {purpose!r}.", param="purpose")
    record = File(tenant_id=tenant_id, purpose=purpose, filename=name[:255] or "upload.jsonl")
    target = files_dir() / f"{record.id}.jsonl"
    size = 0
    try:
        with open(target, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_FILE_BYTES:
                    raise APIError(413, f"The file is larger than {MAX_FILE_BYTES} bytes.", param="file",
                                   type="invalid_request_error")
                out.write(chunk)
        record.bytes, record.path = size, str(target)
        record.save()
    except BaseException as exc:
        target.unlink(missing_ok=True)  # no half-written file, and no row without its file
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise APIError(507, "The appliance has no space left to store this file; retry later or ask its "
                           "administrator to free space.", param="file", code="insufficient_storage",
                           type="server_error") from exc
        raise
    return record


def write_output_file(tenant_id: int, name: str, lines: list[dict]) -> File:
    record = File(tenant_id=tenant_id, purpose=File.Purpose.BATCH_OUTPUT, filename=name)
    target = files_dir() / f"{record.id}.jsonl"
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    target.write_bytes(data)
    record.bytes, record.path = len(data), str(target)
    record.save()
    return record


def delete_file(record: File) -> None:
    Path(record.path).unlink(missing_ok=True)
    record.delete()


def create_batch(tenant_id: int, api_key_id: int | None, input_file_id: Any, endpoint: Any, completion_window: Any,
                 metadata: Any) -> Batch:
    if endpoint not in ENDPOINTS:
        raise invalid(f"'endpoint' must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}.", param="endpoint")
    if completion_window != "24h":
        raise invalid(f"'completion_window' must be '24h', got {completion_window!r}.", param="completion_window")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()) or len(metadata) > 16
    ):
        raise invalid("'metadata' must be an object of at most 16 string values.", param="metadata")
    if not isinstance(input_file_id, str) or not input_file_id:
        raise invalid("'input_file_id' must be a file id.", param="input_file_id")
    input_file = File.objects.filter(tenant_id=tenant_id, pk=input_file_id, purpose=File.Purpose.BATCH).first()
    if input_file is None:
        raise not_found("file", input_file_id, param="input_file_id")
    return Batch.objects.create(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        endpoint=endpoint,
        input_file=input_file,
        completion_window=completion_window,
        metadata=metadata,
        expires_at=timezone.now() + timedelta(hours=24),
    )


def _line_error(line_no: int, message: str) -> dict:
    return {"code": "invalid_request", "message": f"line {line_no}: {message}", "line": line_no}


def parse_line(line_no: int, raw: bytes, endpoint: str, seen: set[str]) -> tuple[str, dict | None, dict | None]:
    """One input line -> (custom_id, request, None) or (custom_id, None, error)."""
    try:
        item = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return "", None, _line_error(line_no, f"not valid JSON ({exc.__class__.__name__})")
    if not isinstance(item, dict):
        return "", None, _line_error(line_no, "must be a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "", None, _line_error(line_no, "custom_id must be a non-empty string")
    if custom_id in seen:
        return custom_id, None, _line_error(line_no, f"duplicate custom_id {custom_id!r}")
    seen.add(custom_id)
    if item.get("method", "POST") != "POST":
        return custom_id, None, _line_error(line_no, "method must be POST")
    if item.get("url") != endpoint:
        return custom_id, None, _line_error(line_no, f"url must be the batch's endpoint {endpoint}")
    if not isinstance(item.get("body"), dict):
        return custom_id, None, _line_error(line_no, "body must be a JSON object")
    return custom_id, item["body"], None


@transaction.atomic
def expand_batch(batch: Batch) -> None:
    """Split the input file into BatchItem rows (once). Malformed lines become failed items straight away."""
    if batch.items.exists():
        return
    items, seen = [], set()
    with open(batch.input_file.path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            if len(items) >= MAX_BATCH_LINES:
                raise invalid(f"A batch holds at most {MAX_BATCH_LINES} requests.", param="input_file_id")
            custom_id, request, error = parse_line(line_no, raw, batch.endpoint, seen)
            items.append(
                BatchItem(
                    batch=batch,
                    line_no=line_no,
                    custom_id=custom_id,
                    request=request,
                    status=BatchItem.Status.FAILED if error else BatchItem.Status.PENDING,
                    error=error,
                )
            )
    if not items:
        raise invalid("The input file holds no requests.", param="input_file_id")
    BatchItem.objects.bulk_create(items, batch_size=2000)
    batch.total = len(items)
    batch.failed = sum(1 for i in items if i.status == BatchItem.Status.FAILED)
    batch.save(update_fields=["total", "failed"])


def record_item(item: BatchItem, status_code: int, body: dict, usage: list | None = None) -> None:
    """Store one line's outcome, bump the batch's counters and write its usage rows in the same transaction: a
    worker killed before it commits leaves the line pending and unbilled, and it runs again."""
    from django.db.models import F

    from appliance.gateway.usage import write_rows

    ok = 200 <= status_code < 300
    counted = (body.get("usage") or {}) if ok else {}
    with transaction.atomic():
        updated = BatchItem.objects.filter(pk=item.pk, status=BatchItem.Status.PENDING).update(
            status=BatchItem.Status.SUCCEEDED if ok else BatchItem.Status.FAILED,
            status_code=status_code,
            response=body if ok else None,
            error=None if ok else body.get("error", body),
        )
        if updated:
            Batch.objects.filter(pk=item.batch_id).update(
                completed=F("completed") + (1 if ok else 0),
                failed=F("failed") + (0 if ok else 1),
                prompt_tokens=F("prompt_tokens") + int(counted.get("prompt_tokens") or 0),
                completion_tokens=F("completion_tokens") + int(counted.get("completion_tokens") or 0),
            )
        write_rows(usage or [])  # the engine ran it either way: billed even if the line was settled meanwhile


CANCELLED = {"code": "batch_cancelled", "message": "The batch was cancelled before this request ran."}


def fail_pending(batch_id: str, error: dict) -> int:
    """Fail the lines still pending with `error` (none may be running), keeping the counters right."""
    from django.db.models import F

    with transaction.atomic():
        pending = BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.PENDING)
        count = pending.update(status=BatchItem.Status.FAILED, error=error)
        if count:
            Batch.objects.filter(pk=batch_id).update(failed=F("failed") + count)
    return count


def finalize_batch(batch: Batch) -> None:
    """Write the output and error files: every line lands in exactly one of them."""
    outputs, errors = [], []
    for item in batch.items.all():
        request_id = f"batch_req_{secrets.token_hex(12)}"
        if item.status == BatchItem.Status.SUCCEEDED:
            outputs.append(
                {
                    "id": request_id,
                    "custom_id": item.custom_id,
                    "response": {"status_code": item.status_code, "request_id": request_id, "body": item.response},
                    "error": None,
                }
            )
        else:
            response = None
            if item.status_code:
                response = {"status_code": item.status_code, "request_id": request_id, "body": {"error": item.error}}
            error = item.error or CANCELLED
            errors.append(
                {
                    "id": request_id,
                    "custom_id": item.custom_id,
                    "response": response,
                    "error": {"code": error.get("code") or error.get("type"), "message": error.get("message")},
                }
            )
    with transaction.atomic():
        for stale in (batch.output_file, batch.error_file):  # a redelivered finalize replaces its own files
            if stale is not None:
                delete_file(stale)
        batch.output_file = batch.error_file = None
        if outputs:
            batch.output_file = write_output_file(batch.tenant_id, f"{batch.id}_output.jsonl", outputs)
        if errors:
            batch.error_file = write_output_file(batch.tenant_id, f"{batch.id}_errors.jsonl", errors)
        batch.save(update_fields=["output_file", "error_file"])


def transition(batch_id: str, status: str, **fields: Any) -> Batch:
    fields[f"{status}_at"] = timezone.now() if f"{status}_at" in {f.name for f in Batch._meta.fields} else None
    fields = {k: v for k, v in fields.items() if v is not None}
    Batch.objects.filter(pk=batch_id).update(status=status, **fields)
    return Batch.objects.get(pk=batch_id)


def cancel_batch(batch: Batch) -> Batch:
    if batch.status in Batch.FINISHED or batch.status in (Batch.Status.CANCELLING, Batch.Status.FINALIZING):
        return batch
    return transition(batch.id, Batch.Status.CANCELLING)


def check_request(endpoint: str, body: Any, allowed_models: frozenset[str]) -> None:
    """Validate a body as the live endpoint would (params.parse, model access) so a bad one is refused at once."""
    from appliance.catalog.models import Deployment
    from appliance.gateway.errors import model_not_found
    from appliance.gateway.params import parse

    if endpoint not in ENDPOINTS:
        raise invalid(f"'endpoint' must be one of {', '.join(ENDPOINTS)}.", param="endpoint")
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    req = parse("chat" if endpoint == "/v1/chat/completions" else "completions", json.dumps(body).encode())
    if req.stream:
        raise invalid("'stream' is not supported for asynchronous requests.", param="stream")
    if not Deployment.objects.filter(name=req.model, is_active=True,
                                     model_version__model__name__in=allowed_models).exists():
        raise model_not_found(req.model)


def create_async_request(tenant_id: int, api_key_id: int | None, endpoint: str, body: Any) -> AsyncRequest:
    """Queue a request (already checked with check_request); it runs on a Celery worker."""
    return AsyncRequest.objects.create(tenant_id=tenant_id, api_key_id=api_key_id, endpoint=endpoint, body=body)
