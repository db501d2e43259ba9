"""The deploy form plans a neuron deployment first: it shows the plan, and refuses one that will not fit."""
from __future__ import annotations

import pytest

from appliance.catalog.models import Deployment, Model, ModelVersion, Node
from appliance.lifecycle.models import CompileJob
from tests.neuron.test_plan import LLAMA_3_8B

pytestmark = pytest.mark.django_db

FORM = {"model": "llama-3-8b", "device": "neuron", "mode": "dedicated", "cores_per_replica": "2",
        "min_replicas": "1", "max_replicas": "1", "idle_timeout": "300"}


@pytest.fixture
def console(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def llama_3_8b(db, tmp_path):
    model = Model.objects.create(name="llama-3-8b", architecture="LlamaForCausalLM", family="llama")
    ModelVersion.objects.create(model=model, version=1, source_uri=str(tmp_path), config=LLAMA_3_8B,
                                context_length=8192, dtype="bfloat16")
    return model


def neuron_node(settings, instance_type: str) -> Node:
    settings.NODE_NAME = "inf2-node"
    return Node.objects.create(name="inf2-node", device="neuron", instance_type=instance_type, cores=2, chips=1)


def test_deploy_form_refuses_llama_3_8b_on_inf2_xlarge_with_the_plans_reason(console, llama_3_8b, settings):
    neuron_node(settings, "inf2.xlarge")
    response = console.post("/deployments/new/", FORM)
    page = response.content.decode()
    assert response.status_code == 400
    assert "The neuron plan refuses this deployment: host memory:" in page
    assert "inf2.xlarge has 16 GiB" in page and "use pre-sharded weights or inf2.8xlarge" in page
    assert 'id="neuron-plan"' in page and "REFUSED" in page and "not measurements" in page
    assert not Deployment.objects.exists() and not CompileJob.objects.exists()


def test_deploy_form_deploys_llama_3_8b_on_inf2_8xlarge_and_reports_the_plan(console, llama_3_8b, settings):
    neuron_node(settings, "inf2.8xlarge")
    response = console.post("/deployments/new/", FORM)
    assert response.status_code == 302
    job = CompileJob.objects.get(model_version__model=llama_3_8b, target="neuron")
    assert job.tp_degree == 2  # the replica's cores, which the plan checked
    page = console.get(response.url).content.decode()
    assert "Neuron plan: tp_degree 2, 17 graphs" in page


def test_deploy_form_refuses_a_neuron_model_it_cannot_plan(console, catalog_model, settings):
    neuron_node(settings, "inf2.xlarge")
    response = console.post("/deployments/new/", {**FORM, "model": "tiny-llama"})
    assert response.status_code == 400
    assert "Cannot plan a neuron compile of tiny-llama:v1" in response.content.decode()
    assert not Deployment.objects.exists()
