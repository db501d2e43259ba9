"""The operator's pages in Debian's chromium against a live appliance (uvicorn, a real engine replica on a tiny
random checkpoint, the real PostgreSQL and Redis): the playground streams an answer through the real /v1 API, the
advisor draws the scores the server computed, and the deployment charts draw p95 and p99 beside p50."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import flush_database
from tests.gateway.conftest import committed, make_deployment, start_engine, start_gateway, stop_gateway

from .test_browser import CHROMIUM, page, shot  # noqa: F401 - fixtures
from tests.admin_fixtures import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db,
              pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing")]


@pytest.fixture(scope="module")
def appliance(django_db_setup, django_db_blocker, tiny_llama, tmp_path_factory):
    """(base url, deployment name): a staff user, a deployment with a READY replica of a real engine, uvicorn."""
    from django.conf import settings

    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    logs = tmp_path_factory.mktemp("operator")
    engine = start_engine(tiny_llama, logs / "engine.log")

    def setup() -> None:
        from django.contrib.auth import get_user_model

        get_user_model().objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)
        make_deployment("tiny-chat", "tiny", engine.model_dir, engine, context_length=256)

    with django_db_blocker.unblock():
        committed(setup)
    gateway = start_gateway(logs)
    try:
        yield gateway.url, "tiny-chat"
    finally:
        stop_gateway(gateway)
        engine.stop()
        flush_database(django_db_blocker)


def log_in(page, base: str) -> None:  # noqa: F811
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_the_playground_streams_an_answer_and_shows_its_latencies(appliance, page, django_db_blocker):  # noqa: F811
    base, name = appliance
    log_in(page, base)
    page.click("header nav >> text=Playground")
    page.select_option("#pg-model", name)
    page.fill("#pg-max-tokens", "24")
    page.fill("#pg-seed", "7")
    assert "$APPLIANCE_API_KEY" in page.inner_text("#pg-curl") and '"seed": 7' in page.inner_text("#pg-curl")
    key = page.get_attribute("#playground-form", "data-key")
    assert key not in page.inner_text("#pg-curl") + page.inner_text("#pg-python")
    assert 'client.chat.completions.create' in page.inner_text("#pg-python")
    page.evaluate("""() => {
        window.answerLengths = [];
        const answer = document.getElementById('pg-answer');
        new MutationObserver(() => window.answerLengths.push(answer.textContent.length))
            .observe(answer, {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#pg-send")
    page.wait_for_selector("body[data-playground=done]", timeout=60_000)
    lengths = [n for n in page.evaluate("window.answerLengths") if n > 0]
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths), lengths  # the text grew chunk by chunk
    stats = page.evaluate("window.playgroundStats")
    assert stats["ttft_ms"] > 0 and stats["itl_p50_ms"] > 0 and stats["itl_p95_ms"] >= stats["itl_p50_ms"]
    assert stats["completion_tokens"] >= 3 and stats["tok_s"] > 0 and stats["prompt_tokens"] > 0
    assert page.inner_text("[data-stat=ttft]").endswith("ms")
    assert page.inner_text("[data-stat=completion_tokens]") == str(stats["completion_tokens"])
    shot(page, "playground")

    def usage():
        from appliance.tenancy.models import UsageRecord

        return list(UsageRecord.objects.filter(tenant__name="internal-playground")
                    .values_list("model_name", "status_code", "completion_tokens"))

    with django_db_blocker.unblock():
        assert committed(usage) == [(name, 200, stats["completion_tokens"])]


def test_the_advisor_draws_the_servers_scores(appliance, page, django_db_blocker):  # noqa: F811
    base, _ = appliance
    log_in(page, base)
    page.click("header nav >> text=Advisor")
    page.select_option("select[name=model]", "tiny")
    page.fill("input[name=requests_per_min]", "0.5")
    page.select_option("select[name=traffic]", "spiky")
    page.click("button:has-text('Advise')")
    page.wait_for_selector("body[data-radar=ok]")
    drawn = page.evaluate("window.advisorChart")

    def server():
        from appliance.catalog.models import Model
        from appliance.console.advisor import Needs
        from appliance.console.advisor_views import advice_for

        return advice_for(Model.objects.get(name="tiny"), Needs(traffic="spiky", requests_per_min=0.5,
                                                                latency_slo_ms=1000, tolerates_cold_start=True))

    with django_db_blocker.unblock():
        advice = committed(server)
    assert {s["key"]: s["values"] for s in drawn["series"]} == {o.option: o.scores for o in advice.options}
    assert [a["key"] for a in drawn["axes"]] == ["model_size", "latency", "isolation", "cost", "scalability"]
    assert page.locator("#radar polygon.series").count() == 3
    assert page.get_attribute("#recommendation", "data-option") == advice.recommended
    shot(page, "advisor")


def test_deployment_charts_draw_p95_and_p99_and_scale_small_percentages(appliance, page,  # noqa: F811
                                                                         django_db_blocker):
    base, name = appliance

    def samples():
        from appliance.telemetry.models import EngineSample

        replica = __import__("appliance.catalog.models", fromlist=["Replica"]).Replica.objects.get(
            deployment__name=name)
        now = timezone.now()
        for i, kv in enumerate((2, 3, 5)):
            s = EngineSample.objects.create(
                replica=replica, interval_s=5, kv_blocks_used=kv, kv_blocks_total=100, max_num_seqs=100,
                seqs_per_step=kv, tokens_per_s=10, ttft_p50_s=0.05, ttft_p95_s=0.09, ttft_p99_s=0.2,
                itl_p50_s=0.01, itl_p95_s=0.02, itl_p99_s=0.04, queue_p50_s=0.001, queue_p95_s=0.003)
            EngineSample.objects.filter(pk=s.pk).update(created_at=now - timedelta(seconds=30 - 10 * i))

    with django_db_blocker.unblock():
        committed(samples)
    log_in(page, base)
    page.goto(f"{base}/deployments/{name}/")
    page.wait_for_selector("body[data-charts=ok]")
    for key in ("ttft", "itl"):
        labels = page.eval_on_selector_all(f"figure.chart[data-key={key}] .series",
                                           "nodes => nodes.map(n => n.dataset.label)")
        assert {"replica 0 p50", "replica 0 p95", "replica 0 p99"} <= set(labels)
    assert page.locator("figure.chart[data-key=ttft] polyline[stroke-dasharray='5 3']").count() == 1
    for key in ("kv", "batch"):  # 2-5 %: the axis tops at 10 %, not 100 %
        assert page.get_attribute(f"figure.chart[data-key={key}]", "data-top") == "10"
    for key in ("queue", "preemptions", "prefix"):
        assert page.locator(f"figure.chart[data-key={key}]").count() == 1
    assert "the registered checkpoint" in page.inner_text("#serves-from")
    shot(page, "deployment-tails")
