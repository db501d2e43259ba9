"""The platform team's path through the console in Debian's chromium: register a tiny checkpoint, compile it for
the CPU on a real Celery worker and watch the progress reach succeeded, deploy it (the real node agent starts a real
engine replica), send it requests, and see the deployment's charts drawn from the telemetry sampler's series."""
from __future__ import annotations

import threading

import httpx
import pytest

from appliance.catalog.models import Deployment, Replica
from appliance.lifecycle.models import CompileJob
from appliance.telemetry.models import EngineSample

from ..lifecycle.conftest import wait_until
from .processes import appliance_env, appliance_processes  # noqa: F401 - fixtures
from .test_browser import CHROMIUM, log_in, page, shot  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.slow,
              pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing")]


def generate(replica, rid: str) -> None:
    """Load straight at the replica, with its credential (as the gateway would send it)."""
    body = {"request_id": rid, "prompt": "once upon a time", "sampling": {"max_tokens": 48, "ignore_eos": True}}
    with httpx.stream("POST", f"{replica.base_url}/generate", json=body, headers=replica.auth_headers,
                      timeout=60) as response:
        assert response.status_code == 200
        for _ in response.iter_lines():
            pass


def test_register_compile_deploy_and_watch_the_charts(live_server, page, staff, appliance_processes,  # noqa: F811
                                                      tiny_llama):
    base = live_server.url
    log_in(page, base)
    page.click("header nav >> text=Models")
    page.click("text=Register a version")
    page.fill("input[name=name]", "tiny-chat")
    page.fill("input[name=path]", str(tiny_llama))
    page.click("button:has-text('Register')")
    page.wait_for_url(f"{base}/models/tiny-chat/")

    page.click("table a.button:has-text('Compile')")
    page.wait_for_url(f"{base}/compile/?version=*")
    assert page.locator("select[name=model_version] option:checked").inner_text().startswith("tiny-chat:v1")
    page.select_option("select[name=target]", "cpu")
    shot(page, "compile-form")
    page.click("button:has-text('Start compile')")
    page.wait_for_url(f"{base}/compile/")
    job = CompileJob.objects.get()
    row = page.locator(f"#compile-jobs tr[data-id='{job.pk}']")
    page.wait_for_selector(f"#compile-jobs tr[data-id='{job.pk}'][data-status=succeeded]", timeout=120_000)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error + job.log
    assert "succeeded" in row.locator(".status").inner_text() and row.locator(".pct").inner_text() == "100 %"
    assert "compiled" in row.inner_text()
    page.click(f"#compile-jobs tr[data-for='{job.pk}'] summary")
    assert "warm-up" in page.inner_text(f"#compile-jobs tr[data-for='{job.pk}'] .log").lower()
    shot(page, "compile-succeeded")

    page.click("header nav >> text=Models")
    page.click("text=tiny-chat")
    page.click("a.button:has-text('Deploy')")
    page.wait_for_url(f"{base}/deployments/new/?model=tiny-chat")
    page.check("input[name=mode][value=dedicated]")
    page.fill("input[name=min_replicas]", "1")
    page.fill("input[name=max_replicas]", "1")
    shot(page, "deploy-form")
    page.click("button:has-text('Deploy')")
    page.wait_for_url(f"{base}/deployments/tiny-chat/")
    dep = Deployment.objects.get(name="tiny-chat")
    assert dep.artifact_id == job.artifact_id and dep.mode == "dedicated"

    replica = wait_until(lambda: Replica.objects.filter(deployment=dep, state="ready").first(), 120,
                         "the node agent to start a ready replica")
    wait_until(lambda: EngineSample.objects.filter(replica=replica).exists(), 30,
               "the telemetry sampler's first sample of the replica (rates start from it)")
    threads = [threading.Thread(target=generate, args=(replica, f"r{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_until(lambda: EngineSample.objects.filter(replica=replica, tokens_per_s__gt=0).exists(), 30,
               "the telemetry sampler to record the engine's throughput")
    page.reload()
    page.wait_for_selector("body[data-charts=ok]")
    tokens = page.locator("figure.chart[data-key=tokens]")
    assert tokens.locator(".series").count() >= 1
    assert page.locator("figure.chart").count() == 9
    assert "ready" in page.inner_text("#replicas") and " s" in page.inner_text("#replicas")
    page.click("#windows button[data-window='15m']")
    page.wait_for_selector("body[data-window='15m']")
    assert page.locator("figure.chart[data-key=tokens] .series").count() >= 1
    shot(page, "deployment")

    page.click("header nav >> text=Nodes")
    node_row = page.locator("#nodes tr[data-name=console-node]")
    assert "tiny-chat#0" in node_row.inner_text() and "1 / 1" in node_row.inner_text()
    shot(page, "nodes")
    page.click("header nav >> text=Dashboard")
    page.click("#deployments a:has-text('tiny-chat')")
    page.wait_for_url(f"{base}/deployments/tiny-chat/")
