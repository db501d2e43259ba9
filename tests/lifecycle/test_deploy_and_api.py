"""`manage.py deploy`, the compile-job admin API, and the hand-over from a finished compile to placement."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from appliance.catalog.models import Deployment, Node
from appliance.lifecycle.agent.node_agent import model_dir
from appliance.lifecycle.models import CompileJob
from tests.admin_fixtures import *  # noqa: F401,F403

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(lc_home):
    return Node.objects.create(name="lc-node", cores=4, last_heartbeat=timezone.now())


def run_deploy(*args: str) -> str:
    out = StringIO()
    call_command("deploy", *args, stdout=out)
    return out.getvalue()


def test_deploy_without_compile_places_replicas_on_free_cores(node, register_version, tiny_llama):
    register_version("tiny", tiny_llama)
    out = run_deploy("tiny", "--no-compile", "--replicas", "2", "--cores-per-replica", "2")
    dep = Deployment.objects.get(name="tiny")
    assert "deployment tiny: dedicated, cpu, replicas 2..2" in out and "status: pending" in out
    assert sorted(dep.replicas.values_list("cores", flat=True)) == [[0, 1], [2, 3]]
    assert model_dir(dep) == str(tiny_llama)


def test_deploy_compiles_then_places_on_the_artifact_and_redeploy_is_a_cache_hit(
        node, lc_home, register_version, tiny_llama, django_capture_on_commit_callbacks):
    from appliance.lifecycle.compile_runner import run_compile_job

    register_version("tiny", tiny_llama)
    with django_capture_on_commit_callbacks(execute=False):  # the test runs the job itself, not a worker
        out = run_deploy("tiny", "--mode", "per-model", "--min-replicas", "1", "--max-replicas", "2")
    job = CompileJob.objects.get()
    dep = Deployment.objects.get(name="tiny")
    assert f"compile job #{job.pk}: queued" in out
    assert dep.status == "pending" and f"waiting for compile job #{job.pk}" in dep.status_message
    assert not dep.replicas.exists()

    with django_capture_on_commit_callbacks(execute=True):
        assert run_compile_job(job.pk) == "succeeded"
    dep.refresh_from_db()
    assert dep.artifact_id == CompileJob.objects.get().artifact_id
    assert dep.replicas.count() == 1 and model_dir(dep) == str(lc_home / "artifact-cache" / dep.artifact.digest)

    with django_capture_on_commit_callbacks(execute=False):
        out = run_deploy("tiny")
    again = CompileJob.objects.exclude(pk=job.pk).get()
    with django_capture_on_commit_callbacks(execute=True):
        run_compile_job(again.pk)
    again.refresh_from_db()
    assert again.cache_hit and again.artifact_id == dep.artifact_id


def test_neuron_deploy_compiles_for_its_replica_cores_in_the_chosen_kv_layout(
        node, register_version, tiny_llama, django_capture_on_commit_callbacks):
    from appliance.lifecycle.compile_runner import neuron_options

    register_version("tiny", tiny_llama)
    with django_capture_on_commit_callbacks(execute=False):
        out = run_deploy("tiny", "--device", "neuron", "--cores-per-replica", "2", "--kv-layout", "contiguous")
        run_deploy("tiny", "--device", "neuron", "--cores-per-replica", "2", "--kv-layout", "block")
    contiguous, block = CompileJob.objects.order_by("pk")
    assert f"compile job #{contiguous.pk}: queued" in out
    assert (contiguous.target, contiguous.tp_degree, contiguous.kv_layout) == ("neuron", 2, "contiguous")
    assert neuron_options(contiguous, tiny_llama)["kv_layout"] == "contiguous"
    assert contiguous.options() != block.options()  # two layouts, two artifacts


def test_deploy_waits_plainly_when_no_node_has_room(node, register_version, tiny_llama):
    register_version("tiny", tiny_llama)
    out = run_deploy("tiny", "--no-compile", "--replicas", "1", "--cores-per-replica", "8")
    assert "status: waiting" in out and "needs 8 free cpu core(s)" in out


@pytest.mark.parametrize("args,words", [
    (["ghost"], "no model named 'ghost'"),
    (["tiny", "--mode", "shared"], "--mode shared needs --pool NAME"),
    (["tiny", "--replicas", "3", "--max-replicas", "2"], "exceeds --max-replicas 2"),
    (["tiny", "--cores-per-replica", "0"], "--cores-per-replica must be at least 1"),
    (["tiny", "--kv-layout", "block"], "kv_layout is a Neuron compile option"),
])
def test_deploy_bad_input_is_a_clear_command_error(node, register_version, tiny_llama, args, words):
    register_version("tiny", tiny_llama)
    with pytest.raises(CommandError, match=words.replace("-", r"\-")):
        run_deploy(*args, "--no-compile")
    assert not Deployment.objects.filter(name="tiny").exists()


def test_compile_job_api_queues_and_reports_progress(staff_api, register_version, tiny_llama, lc_home,
                                                     django_capture_on_commit_callbacks):
    version = register_version("tiny", tiny_llama)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        created = staff_api.post("/api/lifecycle/compile-jobs/",
                                 {"model_version": version.pk, "target": "cpu", "dtype": "float32",
                                  "batch_buckets": [4, 1]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "queued" and body["batch_buckets"] == [1, 4] and body["celery_task_id"]
    assert len(sent) == 1  # the Celery message goes out when the row is committed

    same = staff_api.post("/api/lifecycle/compile-jobs/",
                          {"model_version": version.pk, "target": "cpu", "dtype": "float32", "batch_buckets": [1, 4]},
                          format="json")
    assert same.json()["id"] == body["id"]  # an identical live job is reused, not duplicated

    detail = staff_api.get(f"/api/lifecycle/compile-jobs/{body['id']}/").json()
    assert {"stage", "percent", "log", "error", "cache_hit", "attempts"} <= set(detail)
    cancelled = staff_api.post(f"/api/lifecycle/compile-jobs/{body['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled"


def test_compile_job_api_rejects_bad_input_and_non_staff(staff_api, anon_api, register_version, tiny_llama):
    version = register_version("tiny", tiny_llama)
    bad = staff_api.post("/api/lifecycle/compile-jobs/", {"model_version": version.pk, "target": "tpu"},
                         format="json")
    assert bad.status_code == 400 and "target" in bad.json()
    bad = staff_api.post("/api/lifecycle/compile-jobs/", {"model_version": version.pk, "batch_buckets": [0]},
                         format="json")
    assert bad.status_code == 400 and "batch_buckets" in bad.json()
    bad = staff_api.post("/api/lifecycle/compile-jobs/", {"model_version": version.pk, "target": "neuron",
                                                          "kv_layout": "diagonal"}, format="json")
    assert bad.status_code == 400 and "kv_layout" in bad.json()
    bad = staff_api.post("/api/lifecycle/compile-jobs/", {"model_version": version.pk, "target": "cpu",
                                                          "kv_layout": "block"}, format="json")
    assert bad.status_code == 400 and "kv_layout is a Neuron compile option" in bad.json()["detail"]
    assert anon_api.get("/api/lifecycle/compile-jobs/").status_code in (401, 403)
    assert not CompileJob.objects.exists()


def test_embedding_model_deploys_from_its_checkpoint_without_a_compile_and_never_on_neuron(
        node, tmp_path):
    from appliance.catalog.services import register_model_version
    from tests.runtime.test_encoder import make_bert

    bert = make_bert(tmp_path / "bert")
    register_model_version("tiny-embed", bert)
    out = run_deploy("tiny-embed")  # no --no-compile: an encoder is served as registered
    dep = Deployment.objects.get(name="tiny-embed")
    assert "compile job" not in out and not CompileJob.objects.filter(model_version=dep.model_version).exists()
    assert model_dir(dep) == str(bert) and dep.replicas.count() == 1
    with pytest.raises(CommandError, match="embedding"):
        run_deploy("tiny-embed", "--device", "neuron")
