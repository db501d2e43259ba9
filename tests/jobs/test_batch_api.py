"""The OpenAI Batch API end to end with the official client: uvicorn gateway, a real Celery worker on the batch
queue, an engine replica on a tiny random checkpoint, PostgreSQL and Redis."""
from __future__ import annotations

import io
import json
import time

import openai
import pytest

from appliance.jobs.tasks import BATCH_CONCURRENCY
from tests.lifecycle.conftest import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.celery]

EP = "/v1/chat/completions"


def line(custom_id: str, model: str, **body) -> dict:
    messages = [{"role": "user", "content": f"say something about {custom_id}"}]
    return {"custom_id": custom_id, "method": "POST", "url": EP,
            "body": {"model": model, "messages": messages, "max_tokens": 3, "temperature": 0, **body}}


def upload(client: openai.OpenAI, lines: list) -> str:
    raw = b"".join((ln if isinstance(ln, bytes) else json.dumps(ln).encode()) + b"\n" for ln in lines)
    return client.files.create(file=("requests.jsonl", io.BytesIO(raw)), purpose="batch").id


def run_to_end(client: openai.OpenAI, batch_id: str, timeout: float = 90):
    def finished():
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "cancelled", "expired") else None

    return wait_until(finished, timeout, f"batch {batch_id} to finish", interval=0.25)


def jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x.strip()]


def usage_rows(request_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    from appliance.tenancy.models import UsageRecord

    rows = UsageRecord.objects.filter(request_id__in=request_ids)
    return {r.request_id: (r.prompt_tokens, r.completion_tokens, r.status_code) for r in rows}


def broker_queue_length(name: str) -> int:
    import redis

    from tests.jobs.conftest import BROKER_URL

    return redis.Redis.from_url(BROKER_URL).llen(name)


def deliveries(live) -> int:
    return sum(1 for ln in live.worker.output().splitlines() if "jobs.run_batch[" in ln and "received" in ln)


def test_a_batch_of_200_completes_every_line_and_a_malformed_line_goes_to_the_error_file(live, make_tenant,
                                                                                         openai_client):
    delivered_before = deliveries(live)
    # per-minute limits far below what the batch needs: a batch is not throttled by them
    tenant = make_tenant(rpm=5, tpm=200, max_concurrency=1)
    client = openai_client(tenant.key)
    lines = [line(f"req-{i}", tenant.model) for i in range(200)]
    lines.insert(57, b'{"custom_id": "broken", "method": "POST", "url": ')
    lines.append(line("bad-params", tenant.model, max_tokens=0))
    lines.append(line("unknown-model", "no-such-model"))
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=EP, completion_window="24h",
                                  metadata={"run": "e2e"})
    assert batch.status == "validating" and batch.metadata == {"run": "e2e"}

    batch = run_to_end(client, batch.id)
    assert batch.status == "completed", batch
    assert deliveries(live) - delivered_before >= 2  # it ran in slices (JOBS_BATCH_SLICE_S), requeueing itself
    assert broker_queue_length("compile") == 0  # a batch task goes to the batch queue only, never a copy elsewhere
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (203, 200, 3)

    outputs = jsonl(client, batch.output_file_id)
    assert sorted(o["custom_id"] for o in outputs) == sorted(f"req-{i}" for i in range(200))
    for o in outputs:
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and o["error"] is None
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] >= 1
        assert body["choices"][0]["message"]["role"] == "assistant"

    errors = {e["custom_id"]: e for e in jsonl(client, batch.error_file_id)}
    assert set(errors) == {"", "bad-params", "unknown-model"}
    assert "line 58" in errors[""]["error"]["message"] and errors[""]["response"] is None
    assert errors["bad-params"]["response"]["status_code"] == 400
    assert errors["bad-params"]["response"]["body"]["error"]["param"] == "max_tokens"
    assert errors["unknown-model"]["response"]["status_code"] == 404
    assert errors["unknown-model"]["error"]["code"] == "model_not_found"

    # one usage row per output line, with the tokens the output reports; the batch's usage is their sum
    ids = [o["response"]["body"]["id"] for o in outputs]
    rows = wait_until(lambda: len(r := usage_rows(ids)) == 200 and r, 10, "200 usage rows")
    for o in outputs:
        u = o["response"]["body"]["usage"]
        assert rows[o["response"]["body"]["id"]] == (u["prompt_tokens"], u["completion_tokens"], 200)
    assert all("-batch-" in request_id for request_id in rows)
    assert batch.usage.input_tokens == sum(p for p, _, _ in rows.values())
    assert batch.usage.output_tokens == sum(c for _, c, _ in rows.values())


def test_a_batch_past_the_monthly_budget_fails_the_remaining_lines_with_insufficient_quota(make_tenant,
                                                                                          openai_client):
    from appliance.tenancy.models import UsageRecord

    tenant = make_tenant(monthly_tokens=400)
    client = openai_client(tenant.key)
    batch = client.batches.create(input_file_id=upload(client, [line(f"r{i}", tenant.model) for i in range(40)]),
                                  endpoint=EP, completion_window="24h")
    batch = run_to_end(client, batch.id)
    counts = batch.request_counts
    assert batch.status == "completed" and counts.total == 40
    assert 0 < counts.completed < 40 and counts.completed + counts.failed == 40
    errors = jsonl(client, batch.error_file_id)
    assert len(errors) == counts.failed
    assert {e["error"]["code"] for e in errors} == {"insufficient_quota"}
    assert all("monthly token budget" in e["error"]["message"] for e in errors)
    # each line reserves an estimate (prompt + max_tokens) before it runs and is reconciled after, so the budget
    # can be passed by at most the lines in flight when it ran out
    def written():
        records = list(UsageRecord.objects.filter(tenant_id=tenant.id))
        return records if sum(r.status_code == 200 for r in records) >= counts.completed else None

    records = wait_until(written, 10, "the usage rows")
    assert {r.status_code for r in records} == {200, 429}
    rows = [r.prompt_tokens + r.completion_tokens for r in records if r.status_code == 200]
    assert len(rows) == counts.completed and sum(rows) <= 400 + BATCH_CONCURRENCY * max(rows)
    # live traffic sees the same budget
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model=tenant.model, messages=[{"role": "user", "content": "hi"}] * 40,
                                       max_tokens=3)
    assert exc.value.code == "insufficient_quota"


def test_cancelling_a_running_batch_accounts_for_every_line(make_tenant, openai_client):
    tenant = make_tenant()
    client = openai_client(tenant.key)
    lines = [line(f"c{i}", tenant.model, max_tokens=24, ignore_eos=True) for i in range(400)]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=EP, completion_window="24h")
    wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 8, 60, "lines to complete",
               interval=0.1)
    assert client.batches.cancel(batch.id).status == "cancelling"
    batch = run_to_end(client, batch.id)
    counts = batch.request_counts
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert 8 <= counts.completed < 400 and counts.completed + counts.failed == 400
    outputs, errors = jsonl(client, batch.output_file_id), jsonl(client, batch.error_file_id)
    assert len(outputs) == counts.completed and len(errors) == counts.failed
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert {o["custom_id"] for o in outputs}.isdisjoint(e["custom_id"] for e in errors)
    assert client.batches.cancel(batch.id).status == "cancelled"  # cancelling again changes nothing


def test_another_tenant_gets_404_for_the_batch_and_its_files(make_tenant, openai_client):
    owner, other = make_tenant(), make_tenant()
    mine, theirs = openai_client(owner.key), openai_client(other.key)
    file_id = upload(mine, [line("x", owner.model)])
    batch = mine.batches.create(input_file_id=file_id, endpoint=EP, completion_window="24h")
    for call in (lambda: theirs.batches.retrieve(batch.id), lambda: theirs.batches.cancel(batch.id),
                 lambda: theirs.files.retrieve(file_id), lambda: theirs.files.content(file_id),
                 lambda: theirs.files.delete(file_id),
                 lambda: theirs.batches.create(input_file_id=file_id, endpoint=EP, completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as missing:
        theirs.batches.retrieve("batch_does_not_exist")
    with pytest.raises(openai.NotFoundError) as foreign:
        theirs.batches.retrieve(batch.id)
    assert missing.value.body["message"].replace("batch_does_not_exist", batch.id) == foreign.value.body["message"]
    assert [b.id for b in theirs.batches.list()] == [] and theirs.files.list().data == []
    assert [b.id for b in mine.batches.list()] == [batch.id]
    done = run_to_end(mine, batch.id)
    assert done.status == "completed"
    with pytest.raises(openai.NotFoundError):
        theirs.files.content(done.output_file_id)
    with pytest.raises(openai.AuthenticationError):
        openai_client("sk-not-a-key").batches.retrieve(batch.id)


def test_bad_batch_arguments_are_refused_by_name(make_tenant, openai_client):
    tenant = make_tenant()
    client = openai_client(tenant.key)
    file_id = upload(client, [line("x", tenant.model)])
    with pytest.raises(openai.BadRequestError) as exc:
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert exc.value.body["param"] == "endpoint"
    with pytest.raises(openai.BadRequestError) as exc:
        client.batches.create(input_file_id=file_id, endpoint=EP, completion_window="1h")
    assert exc.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="fine-tune")
    assert exc.value.body["param"] == "purpose"
    started = time.monotonic()
    empty = client.batches.create(input_file_id=upload(client, [b""]), endpoint=EP, completion_window="24h")
    failed = run_to_end(client, empty.id, timeout=30)
    assert failed.status == "failed" and "no requests" in failed.errors.data[0].message
    assert time.monotonic() - started < 30


@pytest.mark.slow
@pytest.mark.faults
def test_a_batch_resumes_after_its_worker_process_is_killed(live, make_tenant, openai_client, fault_report):
    import os
    import signal

    import psutil

    from appliance.jobs.models import BatchItem

    tenant = make_tenant()
    client = openai_client(tenant.key)
    lines = [line(f"k{i}", tenant.model, max_tokens=12, ignore_eos=True) for i in range(160)]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=EP, completion_window="24h")
    wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 16, 60, "lines to complete",
               interval=0.1)
    t0 = time.monotonic()
    children = psutil.Process(live.worker.popen.pid).children()
    assert len(children) == 1
    os.kill(children[0].pid, signal.SIGKILL)  # the pool process running the task; the broker redelivers it
    killed_at = client.batches.retrieve(batch.id).request_counts.completed

    batch = run_to_end(client, batch.id, timeout=90)
    assert batch.status == "completed" and killed_at < 160
    assert (batch.request_counts.completed, batch.request_counts.failed) == (160, 0)
    outputs = jsonl(client, batch.output_file_id)
    assert sorted(o["custom_id"] for o in outputs) == sorted(f"k{i}" for i in range(160))
    assert BatchItem.objects.filter(batch_id=batch.id, status=BatchItem.Status.SUCCEEDED).count() == 160
    # resumed, not restarted, and billed exactly once a line: a line's usage row commits with its outcome, so the
    # lines in flight at the kill (which ran again) left no row behind
    from appliance.tenancy.models import UsageRecord

    rows = UsageRecord.objects.filter(tenant_id=tenant.id, status_code=200)
    billed = {}
    for request_id in rows.values_list("request_id", flat=True):
        billed[request_id] = billed.get(request_id, 0) + 1
    once = sum(1 for o in outputs if billed.get(o["response"]["body"]["id"]) == 1)
    fault_report.add("kill -9 the Celery pool process mid-batch", 1, 160, once,
                     f"killed after {killed_at} lines; the batch resumed and completed; "
                     f"{once} lines answered with one usage row each", time.monotonic() - t0)
    assert rows.count() == 160
    assert sum(r.completion_tokens for r in rows) == 160 * 12 == batch.usage.output_tokens
    assert "WorkerLostError" in live.worker.output() or "SIGKILL" in live.worker.output()
