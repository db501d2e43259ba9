"""The console in Debian's chromium, driven by Playwright, against a live server on a free port."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from appliance.catalog.models import Deployment, Node, Replica
from appliance.tenancy.models import APIKey, UsageRecord
from appliance.tenancy.services import authenticate_key
from tests.admin_fixtures import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", "var/screenshots"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: run scripts/ensure-browser.sh"),
]


@pytest.fixture
def page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15000)
        yield page
        browser.close()
        connections.close_all()  # connections opened while Playwright's loop ran live in that context: close them


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, base: str) -> None:
    page.goto(f"{base}/")
    assert "/login/" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_log_in_create_tenant_and_key_see_it_once(live_server, page, staff, catalog_model):
    base = live_server.url
    log_in(page, base)
    page.click("text=Tenants & keys")
    page.click("text=New tenant")
    page.fill("input[name=name]", "acme")
    page.fill("input[name=rpm]", "60")
    shot(page, "tenant-new")
    page.click("button:has-text('Create tenant')")
    page.wait_for_url(f"{base}/tenants/acme/")
    assert "Tenant acme created" in page.inner_text(".messages")
    page.fill("form.cols input[name=name]", "laptop")
    page.click("button:has-text('Create key')")
    plaintext = page.inner_text("#new-key").strip()
    shot(page, "key-created")
    key = authenticate_key(plaintext)
    assert key is not None and key.name == "laptop" and key.tenant.rpm == 60
    page.click("text=Done")
    page.wait_for_url(f"{base}/tenants/acme/")
    assert plaintext not in page.content()
    assert f"sk-{key.prefix}-" in page.inner_text("#keys")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#keys button:has-text('Revoke')")
    page.wait_for_selector("#keys .status.failed")
    shot(page, "tenant-detail")
    assert authenticate_key(plaintext) is None
    page.go_back()
    page.reload()
    assert plaintext not in page.content()
    assert APIKey.objects.count() == 1


def test_dashboard_shows_deployments_and_live_numbers(live_server, page, staff, catalog_model):
    deployment = Deployment.objects.create(name="llama-chat", model_version=catalog_model.versions.get(),
                                           status="running")
    node = Node.objects.create(name="n1", device="neuron", cores=2)
    replica = Replica.objects.create(deployment=deployment, node=node, state="ready", cores=[0, 1], cold_start_s=4.2)
    from appliance.telemetry.models import OccupancySample

    for core, utilization in ((0, 55.0), (1, 65.0)):
        OccupancySample.objects.create(node=node, replica=replica, device="neuron", core=core,
                                       utilization_pct=utilization, memory_bytes=6 << 30)
    log_in(page, live_server.url)
    row = page.locator("#deployments tr[data-name='llama-chat']")
    assert "running" in row.inner_text() and "1/1" in row.inner_text()
    page.wait_for_selector("body[data-live=ok]")
    from appliance.tenancy.services import create_tenant

    tenant = create_tenant("acme")
    for latency in (40.0, 50.0, 60.0):
        UsageRecord.objects.create(tenant=tenant, model_name="llama-chat", request_id="r", endpoint="completions",
                                   prompt_tokens=7, completion_tokens=5, latency_ms=latency)
    page.wait_for_function("document.getElementById('t-requests').textContent === '3'", timeout=15000)
    cells = row.locator("td").all_inner_texts()
    assert cells[5] == "3" and cells[7] == "36" and cells[8] == "50.0"
    assert row.locator("td.spark svg polyline").count() == 1
    assert row.locator("td.occupancy").inner_text().startswith("60 % · 12.0 GiB")
    assert cells[11] == "4.2 s"
    shot(page, "dashboard")
    page.click("text=Usage")
    assert "llama-chat" in page.inner_text("#usage-by-model")
    shot(page, "usage")
    page.click("text=Models")
    page.click("text=tiny-llama")
    assert "llama-chat" in page.content()
    shot(page, "model")
