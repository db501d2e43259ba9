from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from appliance.tenancy.models import APIKey, UsageRecord, UsageRollup
from appliance.tenancy.services import create_api_key, create_tenant, month_tokens
from appliance.tenancy.tasks import rollup_usage
from appliance.tenancy.usage import percentile, summarize

pytestmark = pytest.mark.django_db


def record(tenant, key, model="llama-chat", prompt=10, completion=5, status=200, at=None, latency=100.0):
    row = UsageRecord.objects.create(
        tenant=tenant, api_key=key, model_name=model, request_id="r", endpoint="chat.completions",
        prompt_tokens=prompt, completion_tokens=completion, status_code=status, latency_ms=latency,
    )
    if at is not None:
        UsageRecord.objects.filter(pk=row.pk).update(created_at=at)
    return row


def test_rollup_is_an_idempotent_upsert_per_tenant_key_model_hour():
    acme, beta = create_tenant("acme"), create_tenant("beta")
    k1, _ = create_api_key(acme)
    k2, _ = create_api_key(beta)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    record(acme, k1, at=hour + timedelta(minutes=1))
    record(acme, k1, at=hour + timedelta(minutes=2), prompt=7, completion=3, status=429)
    record(acme, None, at=hour + timedelta(minutes=3))
    record(acme, k1, model="qwen-chat", at=hour + timedelta(minutes=4))
    record(beta, k2, at=hour - timedelta(minutes=5))
    assert rollup_usage() == 4
    first = sorted(UsageRollup.objects.values_list(
        "tenant__name", "api_key_id", "model_name", "period_start", "requests", "errors", "prompt_tokens",
        "completion_tokens"), key=str)
    assert rollup_usage() == 4
    again = sorted(UsageRollup.objects.values_list(
        "tenant__name", "api_key_id", "model_name", "period_start", "requests", "errors", "prompt_tokens",
        "completion_tokens"), key=str)
    assert first == again and len(again) == 4
    acme_llama = UsageRollup.objects.get(tenant=acme, api_key=k1, model_name="llama-chat")
    assert (acme_llama.requests, acme_llama.errors, acme_llama.prompt_tokens, acme_llama.completion_tokens) == (
        2, 1, 17, 8)
    assert acme_llama.period_start == hour
    assert UsageRollup.objects.get(tenant=beta).period_start == hour - timedelta(hours=1)
    record(acme, k1, at=hour + timedelta(minutes=9), prompt=1, completion=1)
    rollup_usage()
    acme_llama.refresh_from_db()
    assert (acme_llama.requests, acme_llama.prompt_tokens) == (3, 18)
    assert UsageRollup.objects.count() == 4
    assert APIKey.objects.get(pk=k1.pk).last_used_at == hour + timedelta(minutes=9)


def test_rollup_task_accepts_since_and_rejects_garbage():
    acme = create_tenant("acme")
    record(acme, None, at=timezone.now() - timedelta(days=3))
    assert rollup_usage() == 0
    assert rollup_usage((timezone.now() - timedelta(days=4)).isoformat()) == 1
    with pytest.raises(ValueError, match="since"):
        rollup_usage("last tuesday")


def test_month_tokens_counts_this_calendar_month_only():
    acme, beta = create_tenant("acme"), create_tenant("beta")
    key, _ = create_api_key(acme)
    now = datetime(2026, 3, 15, 12, tzinfo=dt_timezone.utc)
    record(acme, key, prompt=100, completion=20, at=datetime(2026, 3, 1, 0, 0, 1, tzinfo=dt_timezone.utc))
    record(acme, None, prompt=1, completion=2, at=datetime(2026, 3, 10, tzinfo=dt_timezone.utc))
    record(acme, key, prompt=1000, completion=1, at=datetime(2026, 2, 28, 23, 59, tzinfo=dt_timezone.utc))
    record(beta, None, prompt=5000, completion=1, at=datetime(2026, 3, 10, tzinfo=dt_timezone.utc))
    assert month_tokens(acme, at=now) == 123
    assert month_tokens(acme, api_key=key, at=now) == 120
    assert month_tokens(beta, at=now) == 5001
    assert month_tokens(create_tenant("empty"), at=now) == 0


def test_summary_median_latency_ignores_errors():
    acme = create_tenant("acme")
    for latency in (10, 20, 30, 1000):
        record(acme, None, latency=latency)
    record(acme, None, latency=5, status=500)
    summary = summarize(UsageRecord.objects.all())
    assert summary.requests == 5 and summary.errors == 1
    assert summary.p50_latency_ms == 25
    assert percentile([], 0.5) is None and percentile([3.0], 0.5) == 3.0


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_write_each_row_once():
    import threading

    from django.db import connections

    acme = create_tenant("acme")
    key, _ = create_api_key(acme)
    for i in range(30):
        record(acme, key if i % 2 else None, model=f"m{i % 3}")
    errors: list[BaseException] = []

    def run():
        try:
            rollup_usage()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert UsageRollup.objects.count() == 6
    assert sum(UsageRollup.objects.values_list("requests", flat=True)) == 30


def test_rollup_runs_as_a_celery_task():
    acme = create_tenant("acme")
    record(acme, None)
    result = rollup_usage.apply()
    assert result.successful() and result.get() == 1


def test_rollup_is_on_the_beat_schedule():
    from django.conf import settings

    from appliance.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["tenancy.rollup_usage"]
    assert entry["task"] == rollup_usage.name and entry["schedule"] <= 3600
    app.loader.import_default_modules()
    assert rollup_usage.name in app.tasks
