"""The replica controller driven against the stand-in API server (TEST DOUBLE) with the official client, over real
PostgreSQL rows: pods made for placed replicas, readiness read back, scale-in deletes, failures recorded."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.catalog.models import Artifact, Deployment, Node, Replica
from appliance.runtime.replica_auth import SECRET_ENV

from .conftest import NAMESPACE

pytestmark = pytest.mark.django_db(transaction=True)  # tick() closes old connections, as in the agent


@pytest.fixture
def version(register_version):
    return register_version("llama-k8s", Path("/models/checkpoints/llama-k8s"))


def deploy(version, name: str = "chat", replicas: int = 1, cores: int = 2, **fields) -> Deployment:
    return Deployment.objects.create(name=name, model_version=version, device="neuron", cores_per_replica=cores,
                                     min_replicas=replicas, max_replicas=replicas, desired_replicas=replicas, **fields)


def engine(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "engine")


def test_the_cluster_is_one_node_with_the_configured_core_budget(controller):
    node = Node.objects.get(name="eks-test")
    assert (node.device, node.cores) == ("neuron", 8)
    assert node.last_heartbeat is not None and node.inventory["kubernetes"]["namespace"] == NAMESPACE


def test_a_placed_replica_gets_a_pod_with_its_neuroncores_command_and_credential(controller, api_double, version):
    dep = deploy(version, engine_args={"max_num_seqs": 4})
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.STARTING and replica.node.name == "eks-test"
    [pod] = api_double.pods(NAMESPACE)
    assert pod["metadata"]["name"].startswith(f"appliance-replica-{replica.pk}-")
    assert pod["metadata"]["labels"]["appliance.io/replica-id"] == str(replica.pk)
    container = engine(pod)
    assert container["resources"]["requests"] == {"aws.amazon.com/neuroncore": "2"}
    assert container["resources"]["limits"] == {"aws.amazon.com/neuroncore": "2"}
    assert container["image"] == "registry.example/appliance:test"
    command = container["command"]
    assert command[:3] == ["python", "-m", "appliance.runtime.server"]
    assert command[command.index("--model") + 1] == "/models/checkpoints/llama-k8s"
    assert command[command.index("--port") + 1] == "8100" and command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--max-num-seqs") + 1] == "4"
    assert command[command.index("--served-model-name") + 1] == "chat"
    assert not any("NEURON_RT_VISIBLE_CORES" == e["name"] for e in container.get("env", []))  # the plugin sets it
    secret_ref = next(e for e in container["env"] if e["name"] == SECRET_ENV)["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == pod["metadata"]["name"]
    assert api_double.secret_value(NAMESPACE, secret_ref["name"], SECRET_ENV) == replica.secret != ""
    assert replica.secret not in str(pod)  # the credential is only in the Secret, never in the pod spec
    assert "/health" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert pod["spec"]["nodeSelector"] == {"node.kubernetes.io/instance-type": "inf2.48xlarge"}
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "appliance-models", "readOnly": True}


def test_a_ready_pod_makes_the_replica_ready_at_its_pod_ip(controller, api_double, version):
    dep = deploy(version)
    controller.tick()
    [pod] = api_double.pods(NAMESPACE)
    controller.tick()
    assert dep.replicas.get().state == Replica.State.STARTING  # the probe has not passed yet
    api_double.mark_ready(pod["metadata"]["name"], "10.0.3.17")
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.READY
    assert (replica.host, replica.port) == ("10.0.3.17", 8100)
    assert replica.base_url == "http://10.0.3.17:8100" and replica.ready_at is not None
    assert replica.cold_start_s is not None and replica.cold_start_s >= 0
    dep.refresh_from_db()
    assert dep.status == Deployment.Status.RUNNING and dep.status_message == "1 of 1 replicas ready"
    assert dep.cold_starts and dep.cold_starts[0]["phases"]["first_ready"] == replica.cold_start_s


def test_scaling_in_deletes_the_pod_and_its_secret_and_stops_the_replica(controller, api_double, version):
    dep = deploy(version, replicas=2)
    controller.tick()
    pods = api_double.pods(NAMESPACE)
    assert len(pods) == 2 and dep.replicas.filter(state=Replica.State.STARTING).count() == 2
    for i, pod in enumerate(pods):
        api_double.mark_ready(pod["metadata"]["name"], f"10.0.3.{20 + i}")
    controller.tick()
    Deployment.objects.filter(pk=dep.pk).update(desired_replicas=1, min_replicas=1, max_replicas=1)
    controller.tick()
    [left] = api_double.pods(NAMESPACE)
    assert sorted(dep.replicas.values_list("state", flat=True)) == [Replica.State.READY, Replica.State.STOPPED]
    stopped = dep.replicas.get(state=Replica.State.STOPPED)
    [gone] = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != left["metadata"]["name"]]
    assert gone.startswith(f"appliance-replica-{stopped.pk}-")
    assert ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{gone}") in api_double.calls
    assert api_double.secret_value(NAMESPACE, gone, SECRET_ENV) is None


def test_a_crashing_engine_marks_the_replica_failed_with_its_exit_and_message(controller, api_double, version):
    dep = deploy(version)
    controller.tick()
    [pod] = api_double.pods(NAMESPACE)
    api_double.mark_ready(pod["metadata"]["name"], "10.0.3.30")
    controller.tick()
    api_double.crash(pod["metadata"]["name"], exit_code=1, restarts=2,
                     message="FAILED RuntimeError: NEFF was compiled for 2 NeuronCores, 1 visible")
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.FAILED and replica.restart_count == 2
    assert replica.last_error == ("engine exited with code 1 (Error): "
                                  "FAILED RuntimeError: NEFF was compiled for 2 NeuronCores, 1 visible")
    dep.refresh_from_db()
    assert "NEFF was compiled for 2 NeuronCores" in dep.status_message
    assert len(api_double.pods(NAMESPACE)) == 1  # the kubelet restarts it in place; no second pod
    api_double.mark_ready(pod["metadata"]["name"], "10.0.3.31")
    controller.tick()
    replica.refresh_from_db()
    assert replica.state == Replica.State.READY and replica.host == "10.0.3.31"


def test_an_evicted_pod_is_replaced_by_a_new_one(controller, api_double, version):
    dep = deploy(version)
    controller.tick()
    [first] = api_double.pods(NAMESPACE)
    api_double.evict(first["metadata"]["name"], "The node was low on resource: memory.")
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.FAILED and replica.restart_count == 1
    assert replica.last_error == "pod failed (Evicted): The node was low on resource: memory."
    assert api_double.pods(NAMESPACE) == []
    controller.tick()
    [second] = api_double.pods(NAMESPACE)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert second["metadata"]["annotations"]["appliance.io/restarts-before"] == "1"
    assert dep.replicas.get().state == Replica.State.STARTING


def test_an_unschedulable_pod_says_why_on_the_replica(controller, api_double, version):
    dep = deploy(version)
    controller.tick()
    [pod] = api_double.pods(NAMESPACE)
    api_double.unschedulable(pod["metadata"]["name"],
                             "0/3 nodes are available: 3 Insufficient aws.amazon.com/neuroncore.")
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.STARTING
    assert "Insufficient aws.amazon.com/neuroncore" in replica.last_error


def test_placement_spends_the_cluster_budget_and_then_waits(controller, api_double, version):
    dep = deploy(version, replicas=5, cores=2)  # 8 cores: 4 replicas fit
    controller.tick()
    assert len(api_double.pods(NAMESPACE)) == 4
    dep.refresh_from_db()
    assert dep.status == Deployment.Status.WAITING and "4 of 5 replicas placed" in dep.status_message


def test_an_s3_artifact_is_fetched_by_an_init_container(controller, api_double, version):
    digest = "ab" * 32
    artifact = Artifact.objects.create(digest=digest, model_version=version, target="neuron",
                                       uri=f"s3://models-bucket/artifacts/{digest}")
    deploy(version, artifact=artifact)
    controller.tick()
    [pod] = api_double.pods(NAMESPACE)
    [init] = pod["spec"]["initContainers"]
    assert init["command"][-2:] == [f"s3://models-bucket/artifacts/{digest}", f"/var/cache/appliance/models/{digest}"]
    command = engine(pod)["command"]
    assert command[command.index("--model") + 1] == f"/var/cache/appliance/models/{digest}"


def test_pods_of_replicas_that_are_gone_are_deleted(controller, api_double, version):
    dep = deploy(version)
    controller.tick()
    [pod] = api_double.pods(NAMESPACE)
    Replica.objects.filter(deployment=dep).update(state=Replica.State.STOPPED)
    Deployment.objects.filter(pk=dep.pk).update(is_active=False)
    controller.tick()
    assert api_double.pods(NAMESPACE) == []
    assert ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}") in api_double.calls


def test_a_pod_the_api_server_refuses_fails_the_replica_with_the_api_message(controller, api_double, version,
                                                                              monkeypatch):
    from appliance.lifecycle.kubernetes import controller as controller_module

    monkeypatch.setattr(controller_module, "pod_name", lambda rid, launch: f"Replica_{rid}")  # not a DNS name
    dep = deploy(version)
    controller.tick()
    replica = dep.replicas.get()
    assert replica.state == Replica.State.FAILED and replica.restart_count == 1
    refused = f"the Kubernetes API refused the pod Replica_{replica.pk} (or its Secret): 422"
    assert replica.last_error.startswith(refused)
    assert "metadata.name: Invalid value" in replica.last_error
    assert api_double.pods(NAMESPACE) == [] and api_double.objects["secrets"] == {}  # no Secret left behind
