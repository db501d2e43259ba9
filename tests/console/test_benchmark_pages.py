"""The benchmark pages server-side: the list and its start form, the CSV and JSON downloads, and the button that
applies a recommendation (staff may; a viewer sees no button and gets 403)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from appliance.capacity.models import BenchmarkRun
from appliance.capacity.report import contract_json
from appliance.catalog.models import Deployment
from appliance.roles import viewer_group
from tests.admin_fixtures import PASSWORD

from .bench_seed import seed_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployment(catalog_model):
    return Deployment.objects.create(name="llama-chat", model_version=catalog_model.versions.get(), max_replicas=1,
                                     target_outstanding_per_replica=8)


@pytest.fixture
def runs(deployment):
    return seed_runs(deployment)


@pytest.fixture
def admin_client(client, staff):
    client.login(username="admin", password=PASSWORD)
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    user = django_user_model.objects.create_user("vera", password=PASSWORD, is_staff=True)
    user.groups.add(viewer_group())
    client.login(username="vera", password=PASSWORD)
    return client


def test_the_list_shows_each_run_with_its_status_levels_and_recommendation(admin_client, runs):
    a, b = runs
    running = BenchmarkRun.objects.create(deployment=a.deployment, concurrency_levels=[2, 8], requests_per_level=8,
                                          status=BenchmarkRun.Status.RUNNING, percent=37, stage="level 1 of 2")
    html = admin_client.get(reverse("console:benchmarks")).content.decode()
    assert f'data-id="{running.pk}"' in html and "37 %" in html and "concurrency 2, 8" in html
    rec = b.results["recommendation"]
    assert rec["meets_slo"] and f"{rec['concurrency_per_replica']} per replica" in html
    assert 'id="bench-form"' in html


def test_staff_starts_a_run_from_the_form_and_it_is_queued_with_those_inputs(admin_client, deployment):
    response = admin_client.post(reverse("console:benchmarks"), {
        "deployment": "llama-chat", "concurrency": "1, 4,16", "profile": "summarization", "requests": 12,
        "ttft_slo_s": 1.5, "itl_slo_s": 0.1})
    run = BenchmarkRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("console:benchmark-detail", args=[run.pk])
    assert (run.status, run.concurrency_levels, run.profile, run.requests_per_level, run.ttft_slo_s,
            run.itl_slo_s) == ("queued", [1, 4, 16], "summarization", 12, 1.5, 0.1)


def test_bad_levels_in_the_form_are_an_error_on_the_page_and_no_run(admin_client, deployment):
    response = admin_client.post(reverse("console:benchmarks"), {
        "deployment": "llama-chat", "concurrency": "1,x", "profile": "qa", "requests": 12, "ttft_slo_s": 1,
        "itl_slo_s": 0.1})
    assert response.status_code == 400 and "comma-separated whole numbers" in response.content.decode()
    assert not BenchmarkRun.objects.exists()


def test_the_csv_has_a_header_and_one_row_per_level_with_the_runs_figures(admin_client, runs):
    b = runs[1]
    response = admin_client.get(reverse("console:benchmark-csv", args=[b.pk]))
    assert response["Content-Type"] == "text/csv" and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    levels = b.results["levels"]
    assert len(rows) == len(levels) == 4
    for row, level in zip(rows, levels):
        assert int(row["concurrency"]) == level["concurrency"]
        for key in ("ttft_p50", "ttft_p99", "itl_p90", "e2e_p99", "output_tok_s", "cost_per_million_output_tokens"):
            assert float(row[key]) == pytest.approx(level[key])
        assert row["core_utilization"] == ""  # None: the replica did not say


def test_the_json_download_is_the_runs_results_as_the_cli_writes_them(admin_client, runs):
    a = runs[0]
    response = admin_client.get(reverse("console:benchmark-json", args=[a.pk]))
    body = json.loads(response.content)
    assert body["levels"] == a.results["levels"] and body["config"] == a.results["config"]
    assert body["recommendation"] == contract_json(a.results)["recommendation"] and body["status"] == "succeeded"


def test_staff_applies_the_recommendation_as_the_deployments_autoscaling_target(admin_client, runs):
    b = runs[1]
    rec = b.results["recommendation"]
    page = admin_client.get(reverse("console:benchmark-detail", args=[b.pk])).content.decode()
    assert 'id="apply-form"' in page
    response = admin_client.post(reverse("console:benchmark-apply", args=[b.pk]), follow=True)
    dep = Deployment.objects.get(name="llama-chat")
    assert dep.target_outstanding_per_replica == rec["concurrency_per_replica"] != 8
    assert dep.max_replicas == max(1, rec["replicas"])
    b.refresh_from_db()
    assert b.applied_at is not None and "now targets" in response.content.decode()


def test_a_viewer_sees_no_apply_button_nor_start_form_and_gets_403_on_both(viewer_client, runs):
    b = runs[1]
    page = viewer_client.get(reverse("console:benchmark-detail", args=[b.pk])).content.decode()
    assert "Recommended:" in page and 'id="apply-form"' not in page
    listing = viewer_client.get(reverse("console:benchmarks")).content.decode()
    assert 'id="bench-form"' not in listing and f'data-id="{b.pk}"' in listing
    assert viewer_client.post(reverse("console:benchmark-apply", args=[b.pk])).status_code == 403
    assert viewer_client.post(reverse("console:benchmarks"), {
        "deployment": "llama-chat", "concurrency": "1", "profile": "qa", "requests": 1, "ttft_slo_s": 1,
        "itl_slo_s": 0.1}).status_code == 403
    dep = Deployment.objects.get(name="llama-chat")
    assert dep.target_outstanding_per_replica == 8 and not BenchmarkRun.objects.filter(applied_at__isnull=False)
    assert BenchmarkRun.objects.count() == 2


def test_a_run_without_a_recommendation_cannot_be_applied(admin_client, deployment):
    run = BenchmarkRun.objects.create(deployment=deployment, concurrency_levels=[1], requests_per_level=1,
                                      status=BenchmarkRun.Status.FAILED, error="gateway unreachable")
    response = admin_client.post(reverse("console:benchmark-apply", args=[run.pk]), follow=True)
    assert "no recommendation to apply" in response.content.decode()
    assert Deployment.objects.get(pk=deployment.pk).target_outstanding_per_replica == 8


def test_compare_must_name_a_run(admin_client, runs):
    url = reverse("console:benchmark-detail", args=[runs[0].pk])
    assert admin_client.get(url + "?compare=abc").status_code == 404
    assert admin_client.get(url + "?compare=999999").status_code == 404
    assert admin_client.get(url + f"?compare={runs[1].pk}").status_code == 200
