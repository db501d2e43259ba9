"""Files, batches and async requests: validation, storage and the state machine. Views and tasks stay thin."""
from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import AsyncRequest, Batch, BatchItem, File

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_BATCH_LINES = 50_000


class JobError(ValueError):
    """A request the client can fix; carries the OpenAI error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


def files_dir() -> Path:
    path = Path(settings.APPLIANCE_HOME) / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_file(tenant, name: str, chunks: Iterable[bytes], purpose: str) -> File:
    if purpose not in (File.Purpose.BATCH,):
        raise JobError(f"purpose must be 'batch', got {purpose!r}", param="purpose")
    record = File(tenant=tenant, purpose=purpose, filename=name[:255] or "upload.jsonl")
    target = files_dir() / f"{record.id}.jsonl"
    size = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                out.close()
                target.unlink(missing_ok=True)
                raise JobError(f"file is larger than {MAX_FILE_BYTES} bytes", param="file", status=413)
            out.write(chunk)
    record.bytes, record.path = size, str(target)
    record.save()
    return record


def write_output_file(tenant, name: str, lines: list[dict]) -> File:
    record = File(tenant=tenant, purpose=File.Purpose.BATCH_OUTPUT, filename=name)
    target = files_dir() / f"{record.id}.jsonl"
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    target.write_bytes(data)
    record.bytes, record.path = len(data), str(target)
    record.save()
    return record


def delete_file(record: File) -> None:
    Path(record.path).unlink(missing_ok=True)
    record.delete()


def create_batch(tenant, api_key, input_file_id: Any, endpoint: Any, completion_window: Any, metadata: Any) -> Batch:
    if endpoint not in ENDPOINTS:
        raise JobError(f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint")
    if completion_window != "24h":
        raise JobError("completion_window must be '24h'", param="completion_window")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()) or len(metadata) > 16
    ):
        raise JobError("metadata must be an object of at most 16 string values", param="metadata")
    input_file = File.objects.filter(tenant=tenant, pk=input_file_id, purpose=File.Purpose.BATCH).first()
    if input_file is None:
        raise JobError(f"No file found with id {input_file_id!r}", param="input_file_id", code="not_found", status=404)
    return Batch.objects.create(
        tenant=tenant,
        api_key=api_key,
        endpoint=endpoint,
        input_file=input_file,
        completion_window=completion_window,
        metadata=metadata,
        expires_at=timezone.now() + timedelta(hours=24),
    )


def _line_error(line_no: int, message: str, custom_id: str = "") -> dict:
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
                raise JobError(f"a batch holds at most {MAX_BATCH_LINES} requests", param="input_file_id")
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
        raise JobError("the input file holds no requests", param="input_file_id")
    BatchItem.objects.bulk_create(items)
    batch.total = len(items)
    batch.failed = sum(1 for i in items if i.status == BatchItem.Status.FAILED)
    batch.save(update_fields=["total", "failed"])


def record_item(item: BatchItem, status_code: int, body: dict) -> None:
    """Store one line's outcome and bump the batch's counters in the same transaction."""
    from django.db.models import F

    ok = 200 <= status_code < 300
    usage = (body.get("usage") or {}) if ok else {}
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
                prompt_tokens=F("prompt_tokens") + int(usage.get("prompt_tokens") or 0),
                completion_tokens=F("completion_tokens") + int(usage.get("completion_tokens") or 0),
            )


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
            error = item.error or {"code": "cancelled", "message": "the batch was cancelled before this request ran"}
            errors.append(
                {
                    "id": request_id,
                    "custom_id": item.custom_id,
                    "response": response,
                    "error": {"code": error.get("code") or error.get("type"), "message": error.get("message")},
                }
            )
    with transaction.atomic():
        if outputs:
            batch.output_file = write_output_file(batch.tenant, f"{batch.id}_output.jsonl", outputs)
        if errors:
            batch.error_file = write_output_file(batch.tenant, f"{batch.id}_errors.jsonl", errors)
        batch.save(update_fields=["output_file", "error_file"])


def transition(batch_id: str, status: str, **fields: Any) -> Batch:
    fields[f"{status}_at"] = timezone.now() if f"{status}_at" in {f.name for f in Batch._meta.fields} else None
    fields = {k: v for k, v in fields.items() if v is not None}
    Batch.objects.filter(pk=batch_id).update(status=status, **fields)
    return Batch.objects.get(pk=batch_id)


def cancel_batch(batch: Batch) -> Batch:
    if batch.status in Batch.FINISHED or batch.status == Batch.Status.CANCELLING:
        return batch
    return transition(batch.id, Batch.Status.CANCELLING)


def create_async_request(tenant, api_key, endpoint: str, body: Any) -> AsyncRequest:
    if endpoint not in ENDPOINTS:
        raise JobError(f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint")
    if not isinstance(body, dict):
        raise JobError("the request body must be a JSON object")
    if body.get("stream"):
        raise JobError("stream is not supported for asynchronous requests", param="stream")
    return AsyncRequest.objects.create(tenant=tenant, api_key=api_key, endpoint=endpoint, body=body)
