"""The benchmark run page in Debian's chromium (Playwright, a live server): the plots are drawn from the run's
results, the compare overlay draws both runs, and the CSV download has one row per level."""
from __future__ import annotations

import csv
import io

import pytest

from appliance.catalog.models import Deployment

from .bench_seed import seed_runs
from .test_browser import CHROMIUM, log_in, page, shot  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing")]


def chart(page, key: str) -> dict:
    return page.evaluate("(key) => window.benchCharts.find((c) => c.key === key)", key)


def test_the_run_page_draws_its_plots_from_the_runs_results(live_server, page, staff, catalog_model):  # noqa: F811
    deployment = Deployment.objects.create(name="llama-chat", model_version=catalog_model.versions.get())
    a, b = seed_runs(deployment)
    base = live_server.url
    log_in(page, base)
    page.click("header nav >> text=Benchmarks")
    page.click(f"#runs a:has-text('#{a.pk}')")
    page.wait_for_selector("body[data-bench-charts=ok]")
    levels = a.results["levels"]
    # the data handed to the charts is the run's results as stored
    assert page.evaluate("window.benchData.runs[0].levels") == levels
    for metric in ("ttft", "itl"):
        c = chart(page, f"throughput-{metric}")
        assert [(p["x"], p["y"]) for p in c["series"][0]["points"]] == [
            (lv[f"{metric}_p50"], lv["output_tok_s"]) for lv in levels]
        fig = page.locator(f"figure[data-key=throughput-{metric}]")
        assert fig.locator("circle.point").count() == len(levels) == 3
        assert float(fig.locator("line.slo").get_attribute("data-x")) == a.results["config"]["slo"][f"{metric}_s"]
    lat = page.locator("figure[data-key=latency-e2e]")
    assert lat.locator("circle.point").count() == 3 * len(levels)  # p50, p90, p99 per level
    e2e = chart(page, "latency-e2e")
    assert [p["y"] for p in e2e["series"][2]["points"]] == [lv["e2e_p99"] for lv in levels]
    cost = chart(page, "cost")
    assert [p["y"] for p in cost["series"][0]["points"]] == pytest.approx(
        [lv["cost_per_million_output_tokens"] for lv in levels])
    assert page.locator("#levels tbody tr").count() == len(levels)
    shot(page, "benchmark-run")

    # overlay the other configuration: both runs' points, each as many as its levels
    page.select_option("#compare", str(b.pk))
    page.wait_for_url(f"**/benchmarks/{a.pk}/?compare={b.pk}")
    page.wait_for_selector("body[data-bench-charts=ok]")
    fig = page.locator("figure[data-key=throughput-ttft]")
    assert fig.locator(f"circle.point[data-run='{a.pk}']").count() == 3
    assert fig.locator(f"circle.point[data-run='{b.pk}']").count() == len(b.results["levels"]) == 4
    assert page.evaluate("window.benchData.runs[1].levels") == b.results["levels"]
    assert "run " + str(b.pk) in fig.locator(".legend").inner_text()
    assert page.locator("figure[data-key=cost] circle.point").count() == 7
    shot(page, "benchmark-compare")

    with page.expect_download() as info:
        page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert [int(r["concurrency"]) for r in rows] == [lv["concurrency"] for lv in levels]
