"""Console pages of the lifecycle: compile jobs, deploy, deployment detail and its series, nodes."""
from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Replica
from appliance.lifecycle.models import CompileJob
from appliance.telemetry.models import EngineSample, OccupancySample
from appliance.tenancy.models import AuditLog

pytestmark = pytest.mark.django_db

PAGES = ["/compile/", "/deployments/", "/deployments/new/", "/nodes/"]
JSON = ["/compile/jobs.json", "/deployments/tiny-llama/series.json"]


@pytest.fixture
def console(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def deployment(catalog_model):
    dep = Deployment.objects.create(name="tiny-llama", model_version=catalog_model.versions.get(), status="running",
                                    min_replicas=0, max_replicas=2, desired_replicas=1, idle_timeout_s=600,
                                    last_request_at=timezone.now() - timedelta(seconds=100))
    node = Node.objects.create(name="n1", device="cpu", cores=4, last_heartbeat=timezone.now())
    Replica.objects.create(deployment=dep, node=node, index=0, state="ready", cores=[0], port=1234,
                           cold_start_s=2.25, restart_count=3)
    return dep


@pytest.mark.parametrize("url", PAGES + ["/deployments/tiny-llama/"])
def test_pages_need_a_staff_login(client, regular_user, url):
    assert client.get(url).url.startswith("/login/")
    client.force_login(regular_user)
    assert client.get(url).status_code == 302


@pytest.mark.parametrize("url", JSON)
def test_json_endpoints_refuse_non_staff(client, regular_user, url):
    assert client.get(url).status_code == 403
    client.force_login(regular_user)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", PAGES + ["/deployments/tiny-llama/"])
def test_pages_render_for_staff(console, deployment, url):
    assert console.get(url).status_code == 200


def test_compile_form_queues_a_job_with_its_options(console, staff, catalog_model):
    version = catalog_model.versions.get()
    page = console.get(f"/compile/?version={version.pk}").content.decode()
    assert f'<option value="{version.pk}" selected>' in page
    response = console.post("/compile/", {"model_version": version.pk, "target": "neuron", "tp_degree": "2",
                                          "batch_buckets": "8, 1,4", "seq_len_buckets": "128,512",
                                          "dtype": "bfloat16", "quantization": "int8", "kernels": "on"})
    assert response.status_code == 302 and response.url == "/compile/"
    job = CompileJob.objects.get()
    assert job.status == "queued" and job.celery_task_id
    assert job.options() == {"target": "neuron", "tp_degree": 2, "batch_buckets": [1, 4, 8],
                             "seq_len_buckets": [128, 512], "dtype": "bfloat16", "quantization": "int8",
                             "kernels": True}
    audit = AuditLog.objects.get(object_type="lifecycle.compilejob")
    assert audit.actor == staff and audit.action == "create" and audit.changes["tp_degree"] == 2
    listing = console.get("/compile/").content.decode()
    assert f'data-id="{job.pk}"' in listing and "tiny-llama:v1" in listing and "batch 1,4,8" in listing
    again = console.post("/compile/", {"model_version": version.pk, "target": "neuron", "tp_degree": "2",
                                       "batch_buckets": "1,4,8", "seq_len_buckets": "512,128", "dtype": "bfloat16",
                                       "quantization": "int8", "kernels": "on"}, follow=True)
    assert f"An identical compile, #{job.pk}, is already queued" in again.content.decode()
    assert CompileJob.objects.count() == 1 and AuditLog.objects.filter(object_type="lifecycle.compilejob").count() == 1


@pytest.mark.parametrize("fields, field, message", [
    ({"target": "cpu", "tp_degree": "2"}, "tp_degree", "target cpu runs with tensor-parallel degree 1"),
    ({"target": "neuron", "tp_degree": "3"}, "tp_degree", "Inf2 supports tensor-parallel degree 1, 2, 4, 8, 24"),
    ({"target": "cpu", "kernels": "on"}, "kernels", "NKI kernels run only on Neuron"),
    ({"batch_buckets": "1,x"}, "batch_buckets", "&#x27;x&#x27; is not a positive whole number"),
    ({"seq_len_buckets": "4096"}, "seq_len_buckets", "4096 exceeds the model&#x27;s context length 512"),
    ({"model_version": "999"}, "model_version", "Select a valid choice"),
])
def test_compile_form_errors_are_shown_and_queue_nothing(console, catalog_model, fields, field, message):
    data = {"model_version": catalog_model.versions.get().pk, "target": "cpu", "tp_degree": "1",
            "quantization": "none", **fields}
    response = console.post("/compile/", data)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert message in response.content.decode()
    assert not CompileJob.objects.exists()


def test_compile_jobs_json_reports_progress(console, catalog_model):
    version = catalog_model.versions.get()
    running = CompileJob.objects.create(model_version=version, status="running", stage="converting", percent=40,
                                        log="10:00:00 converting\n")
    failed = CompileJob.objects.create(model_version=version, status="failed", stage="done", percent=100,
                                       error="config.json is missing: register the checkpoint again")
    hit = CompileJob.objects.create(model_version=version, status="succeeded", percent=100, cache_hit=True)
    data = console.get(f"/compile/jobs.json?ids={running.pk},{failed.pk}").json()
    by_id = {j["id"]: j for j in data["jobs"]}
    assert set(by_id) == {running.pk, failed.pk}
    assert by_id[running.pk]["percent"] == 40 and by_id[running.pk]["stage"] == "converting"
    assert not by_id[running.pk]["finished"] and "converting" in by_id[running.pk]["log"]
    assert by_id[failed.pk]["error"].startswith("config.json is missing") and by_id[failed.pk]["finished"]
    assert {j["id"]: j["cache_hit"] for j in console.get("/compile/jobs.json").json()["jobs"]}[hit.pk] is True
    assert console.get("/compile/jobs.json?ids=1,abc").status_code == 400
    page = console.get("/compile/").content.decode()
    assert "config.json is missing: register the checkpoint again" in page and "cache hit" in page


def test_deploy_form_creates_the_deployment_and_audits_it(console, staff, catalog_model, settings):
    settings.NODE_NAME = "console-node"
    response = console.post("/deployments/new/", {"model": "tiny-llama", "device": "cpu", "mode": "per-model",
                                                  "cores_per_replica": "1", "min_replicas": "0",
                                                  "max_replicas": "2", "idle_timeout": "120"})
    assert response.status_code == 302 and response.url == "/deployments/tiny-llama/"
    dep = Deployment.objects.get(name="tiny-llama")
    assert (dep.mode, dep.device, dep.min_replicas, dep.max_replicas, dep.idle_timeout_s) == \
        ("per-model", "cpu", 0, 2, 120)
    assert dep.model_version == catalog_model.versions.get()
    assert CompileJob.objects.get(model_version=dep.model_version, target="cpu").status == "queued"
    audit = AuditLog.objects.get(object_type="catalog.deployment")
    assert audit.action == "create" and audit.actor == staff and audit.changes["mode"] == "per-model"
    page = console.get(response.url).content.decode()
    assert 'id="scale-to-zero"' in page and "Scaled to zero" in page
    response = console.post("/deployments/new/", {"model": "tiny-llama", "device": "cpu", "mode": "per-model",
                                                  "cores_per_replica": "1", "min_replicas": "1",
                                                  "max_replicas": "2", "idle_timeout": "120"})
    assert response.status_code == 302
    update = AuditLog.objects.get(object_type="catalog.deployment", action="update")
    assert update.changes["min_replicas"] == [0, 1]


@pytest.mark.parametrize("fields, field, message", [
    ({"min_replicas": "3", "max_replicas": "2"}, "min_replicas", "min replicas (3) is more than max replicas (2)"),
    ({"mode": "shared"}, "pool", "a shared deployment needs a pool name"),
    ({"mode": "dedicated", "min_replicas": "0"}, "min_replicas", "use per-model to scale to zero"),
    ({"cores_per_replica": "0"}, "cores_per_replica", "greater than or equal to 1"),
    ({"model": "ghost"}, "model", "Select a valid choice"),
    ({"device": "tpu"}, "device", "Select a valid choice"),
])
def test_deploy_form_errors_are_shown_and_create_nothing(console, catalog_model, fields, field, message):
    data = {"model": "tiny-llama", "device": "cpu", "mode": "per-model", "cores_per_replica": "1",
            "min_replicas": "1", "max_replicas": "1", "idle_timeout": "300", **fields}
    response = console.post("/deployments/new/", data)
    assert response.status_code == 400 and field in response.context["form"].errors
    assert message in response.content.decode()
    assert not Deployment.objects.exists() and not CompileJob.objects.exists()


def test_deploy_form_starts_from_the_deployments_settings(console, deployment):
    form = console.get("/deployments/new/?model=tiny-llama").context["form"]
    assert form.initial["mode"] == "dedicated" and form.initial["min_replicas"] == 0
    assert form.initial["max_replicas"] == 2 and form.initial["idle_timeout"] == 600


def test_deployment_detail_shows_replicas_and_scale_to_zero(console, deployment):
    page = console.get("/deployments/tiny-llama/").content.decode()
    assert "2.25 s" in page and "127.0.0.1:1234" in page
    assert re.search(r"Idle 10[01] s; scales to zero in (499|500) s", page)
    assert console.get("/deployments/ghost/").status_code == 404
    assert console.get("/deployments/ghost/series.json").status_code == 404


def test_a_failed_deployment_shows_its_failure_and_no_scale_to_zero_countdown(console, deployment):
    failure = "compile job #3 failed: unexpected IndexError during stage validating: index out of range in self"
    Deployment.objects.filter(pk=deployment.pk).update(status=Deployment.Status.FAILED, status_message=failure)
    deployment.replicas.update(state=Replica.State.FAILED)
    page = console.get("/deployments/tiny-llama/").content.decode()
    assert failure in page and "scales to zero" not in page.lower() and "scale-to-zero" not in page
    data = console.get("/deployments/tiny-llama/series.json").json()
    assert data["status"] == "failed" and data["status_message"] == failure and data["scale_to_zero"] is None


def test_series_json_charts_the_engine_and_occupancy_samples_with_tail_latencies(console, deployment):
    replica = deployment.replicas.get()
    now = timezone.now()
    rows = [
        EngineSample(replica=replica, interval_s=None, kv_blocks_used=0, kv_blocks_total=100, max_num_seqs=8),
        EngineSample(replica=replica, interval_s=5, running=2, kv_blocks_used=25, kv_blocks_total=100,
                     max_num_seqs=8, tokens_per_s=120.0, seqs_per_step=2.0, ttft_p50_s=0.0421, itl_p50_s=0.0153,
                     ttft_p95_s=0.09, ttft_p99_s=0.2, itl_p95_s=0.03, itl_p99_s=0.05, queue_p50_s=0.004,
                     queue_p95_s=0.012, preemptions=3, prefix_cache_hit_rate=0.25),
    ]
    for i, row in enumerate(EngineSample.objects.bulk_create(rows)):
        EngineSample.objects.filter(pk=row.pk).update(created_at=now - timedelta(seconds=10 - 5 * i))
    old = EngineSample.objects.create(replica=replica, interval_s=5, tokens_per_s=999)
    EngineSample.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=2))
    for core, pct in ((0, 30.0), (1, 50.0)):
        OccupancySample.objects.create(node=replica.node, replica=replica, device="cpu", core=core,
                                       utilization_pct=pct)
    data = console.get("/deployments/tiny-llama/series.json").json()
    charts = {c["key"]: c for c in data["charts"]}
    assert set(charts) == {"ttft", "itl", "tokens", "batch", "kv", "queue", "preemptions", "prefix", "util"}
    assert data["until"] - data["since"] == 3600 * 1000
    [tokens] = charts["tokens"]["series"]
    assert tokens["label"] == "replica 0" and [v for _, v in tokens["points"]] == [120.0]
    ttft = {s["quantile"]: [v for _, v in s["points"]] for s in charts["ttft"]["series"]}
    assert ttft == {"p50": [42.1], "p95": [90.0], "p99": [200.0]}
    itl = {s["quantile"]: [v for _, v in s["points"]] for s in charts["itl"]["series"]}
    assert itl == {"p50": [15.3], "p95": [30.0], "p99": [50.0]}
    assert [s["label"] for s in charts["ttft"]["series"]] == ["replica 0 p50", "replica 0 p95", "replica 0 p99"]
    queue = {s["quantile"]: [v for _, v in s["points"]] for s in charts["queue"]["series"]}
    assert queue == {"p50": [4.0], "p95": [12.0]}
    assert [v for _, v in charts["preemptions"]["series"][0]["points"]] == [36.0]  # 3 in 5 s
    assert [v for _, v in charts["prefix"]["series"][0]["points"]] == [25.0]
    assert [v for _, v in charts["batch"]["series"][0]["points"]] == [25.0]
    assert [v for _, v in charts["kv"]["series"][0]["points"]] == [0.0, 25.0]
    assert [v for _, v in charts["util"]["series"][0]["points"]] == [40.0]
    assert charts["util"]["title"] == "CPU utilization"
    for key in ("batch", "kv", "util"):  # scaled to the data (2-5 % must not look flat), never past 100 %
        assert charts[key]["max"] is None and charts[key]["cap"] == 100.0
    assert data["replicas"] == [{"index": 0, "state": "ready", "cold_start_s": 2.25, "restarts": 3}]
    assert data["scale_to_zero"]["state"] == "armed"
    short = console.get("/deployments/tiny-llama/series.json?window=15m").json()
    assert short["window"] == "15m" and short["until"] - short["since"] == 15 * 60 * 1000
    assert console.get("/deployments/tiny-llama/series.json?window=bogus").json()["window"] == "1h"


def test_nodes_page_shows_inventory_and_heartbeat(console, deployment):
    Node.objects.create(name="inf2-a", device="neuron", instance_type="inf2.24xlarge", chips=6, cores=12,
                        memory_per_core_bytes=16 << 30, last_heartbeat=timezone.now() - timedelta(hours=1))
    page = console.get("/nodes/").content.decode()
    assert "inf2.24xlarge" in page and "16.0\xa0GB" in page and "192.0\xa0GB" in page
    assert "1 / 3" in page  # n1: one core used by the replica, three free
    assert "no heartbeat for more than" in page and "s ago" in page


def test_nodes_page_shows_what_first_boot_found(console, tmp_path, monkeypatch):
    """register_node as first boot runs it, against TEST DOUBLES (a local IMDS stand-in, fake neuron-ls and
    modinfo: see tests/lifecycle/host_doubles.py), then the page a platform engineer opens."""
    from django.core.management import call_command

    from tests.lifecycle.host_doubles import FakeIMDS, fake_neuron_ls, fake_tool
    from tests.telemetry.test_neuron_ls import INF2_24XL

    bin_dir = tmp_path / "bin"
    fake_neuron_ls(bin_dir, INF2_24XL)
    fake_tool(bin_dir, "modinfo", stdout="2.26.10.0")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with FakeIMDS("inf2.24xlarge") as imds:
        monkeypatch.setenv("APPLIANCE_IMDS_URL", imds.url)
        call_command("register_node", "--device", "neuron", "--node", "inf2-first-boot")
    fake_tool(bin_dir, "modinfo", stderr="modinfo: ERROR: Module neuron not found.", exit_status=1)
    fake_tool(bin_dir, "neuron-ls", stderr="No Neuron devices found", exit_status=1)
    monkeypatch.setenv("APPLIANCE_IMDS_URL", "http://127.0.0.1:9")
    call_command("register_node", "--device", "neuron", "--node", "inf2-no-driver", "--imds-timeout", "0.5")

    page = console.get("/nodes/").content.decode()
    row = page[page.index('data-name="inf2-first-boot"'):page.index('data-name="inf2-no-driver"')]
    assert "inf2.24xlarge" in row and ">6<" in row and ">12<" in row and "192.0\xa0GB" in row
    assert "installed, not loaded" in row and "2.26.10.0" in row and f"kernel {os.uname().release}" in row
    broken = page[page.index('data-name="inf2-no-driver"'):]
    assert "instance type unknown" in broken and "driver <span" in broken and "missing" in broken
    assert "Module neuron not found" in broken and "neuron-ls failed: No Neuron devices found" in broken


def test_nodes_page_shows_each_nodes_state(console, deployment):
    Node.objects.create(name="inf2-lost", cores=2, state="lost", last_heartbeat=timezone.now() - timedelta(hours=1))
    Node.objects.create(name="inf2-drain", cores=2, state="draining", last_heartbeat=timezone.now())
    page = console.get("/nodes/").content.decode()
    rows = {name: page.split(f'data-name="{name}"', 1)[1].split("</tr>", 1)[0] for name in ("inf2-lost", "inf2-drain")}
    assert 'class="status node-state failed"' in rows["inf2-lost"] and ">lost</span>" in rows["inf2-lost"]
    assert "placed on other nodes" in rows["inf2-lost"]
    assert ">draining</span>" in rows["inf2-drain"] and "drain_node inf2-drain --undo" in rows["inf2-drain"]
