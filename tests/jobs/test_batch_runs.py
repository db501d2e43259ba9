"""The batch state machine with the request executor replaced by a recorded stand-in (the end-to-end batch test
runs the real gateway and engine; this one checks accounting, resumption and cancellation precisely)."""
import json

import pytest

from appliance.jobs import services, tasks
from appliance.jobs.models import Batch, BatchItem
from appliance.tenancy.models import Tenant

pytestmark = pytest.mark.django_db
ran_by_task = pytest.mark.django_db(transaction=True)  # the task records items from its own DB threads

EP = "/v1/completions"


@pytest.fixture
def tenant():
    return Tenant.objects.create(name="acme")


def make_batch(tenant, lines: list) -> Batch:
    raw = [ln if isinstance(ln, bytes) else json.dumps(ln).encode() for ln in lines]
    record = services.store_file(tenant.id, "in.jsonl", [b"\n".join(raw) + b"\n"], "batch")
    return services.create_batch(tenant.id, None, record.id, EP, "24h", {"team": "ml"})


def request_line(i: int) -> dict:
    return {"custom_id": f"req-{i}", "method": "POST", "url": EP, "body": {"model": "m", "prompt": f"p{i}"}}


@pytest.fixture
def executed(monkeypatch):
    calls = []

    async def fake_execute(api_key, endpoint, body, priority, source, usage_sink=None):
        calls.append((body["prompt"], priority))
        if body["prompt"] == "p13":
            return 400, {"error": {"message": "max_tokens must be >= 1", "type": "invalid_request_error", "code": None}}
        return 200, {"object": "text_completion", "choices": [{"text": body["prompt"].upper()}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    monkeypatch.setattr(tasks, "execute", fake_execute)
    return calls


def read_jsonl(file) -> list[dict]:
    with open(file.path) as fh:
        return [json.loads(line) for line in fh]


@ran_by_task
def test_every_line_lands_in_exactly_one_output_or_error_file(tenant, executed):
    batch = make_batch(tenant, [request_line(i) for i in range(20)] + [b"{broken"])
    tasks.run_batch(batch.id)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED
    assert (batch.total, batch.completed, batch.failed) == (21, 19, 2)
    out, err = read_jsonl(batch.output_file), read_jsonl(batch.error_file)
    assert sorted(o["custom_id"] for o in out) == sorted(f"req-{i}" for i in range(20) if i != 13)
    assert {o["custom_id"]: o["response"]["body"]["choices"][0]["text"] for o in out}["req-4"] == "P4"
    assert [(e["custom_id"], e["response"]["status_code"] if e["response"] else None) for e in err] == [
        ("req-13", 400), ("", None)
    ]
    assert "line 21" in err[1]["error"]["message"]
    assert (batch.prompt_tokens, batch.completion_tokens) == (57, 38)
    assert all(priority == tasks.BATCH_PRIORITY for _, priority in executed)


@ran_by_task
def test_a_redelivered_batch_resumes_pending_items_only(tenant, executed):
    batch = make_batch(tenant, [request_line(i) for i in range(5)])
    services.expand_batch(batch)
    services.transition(batch.id, Batch.Status.IN_PROGRESS)
    first = BatchItem.objects.get(batch=batch, line_no=1)
    services.record_item(first, 200, {"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    tasks.run_batch(batch.id)
    assert sorted(p for p, _ in executed) == ["p1", "p2", "p3", "p4"]
    batch.refresh_from_db()
    assert (batch.status, batch.completed, batch.failed) == (Batch.Status.COMPLETED, 5, 0)
    tasks.run_batch(batch.id)  # finished: a second delivery does nothing
    assert len(executed) == 4


@ran_by_task
def test_a_cancelled_batch_accounts_for_unrun_lines_as_cancelled(tenant, executed):
    batch = make_batch(tenant, [request_line(i) for i in range(6)])
    services.cancel_batch(batch)  # cancelling before the worker picks it up
    tasks.run_batch(batch.id)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED and executed == []
    errors = read_jsonl(batch.error_file)
    assert len(errors) == 6 and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert (batch.completed, batch.failed) == (0, 6)


@ran_by_task
def test_an_empty_input_file_fails_the_batch_with_a_reason(tenant, executed):
    record = services.store_file(tenant.id, "empty.jsonl", [b"\n\n"], "batch")
    batch = services.create_batch(tenant.id, None, record.id, EP, "24h", None)
    tasks.run_batch(batch.id)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.FAILED
    assert "holds no requests" in batch.errors["data"][0]["message"]


@pytest.mark.parametrize(
    "args, param",
    [
        (dict(endpoint="/v1/embeddings"), "endpoint"),
        (dict(completion_window="1h"), "completion_window"),
        (dict(metadata={"a": 1}), "metadata"),
        (dict(input_file_id="file-nope"), "input_file_id"),
    ],
)
def test_create_batch_rejects_bad_arguments_by_name(tenant, args, param):
    record = services.store_file(tenant.id, "in.jsonl", [json.dumps(request_line(0)).encode()], "batch")
    fields = dict(input_file_id=record.id, endpoint=EP, completion_window="24h", metadata=None) | args
    with pytest.raises(services.APIError) as exc:
        services.create_batch(tenant.id, None, fields["input_file_id"], fields["endpoint"],
                              fields["completion_window"], fields["metadata"])
    assert exc.value.param == param
    assert not Batch.objects.filter(tenant=tenant).exists()
