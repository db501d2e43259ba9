"""`manage.py run_agent` picks its replica backend from APPLIANCE_REPLICA_BACKEND: with `kubernetes` it runs the
replica controller (here against the stand-in API server, a TEST DOUBLE) instead of starting engine processes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.models import Deployment, Replica
from tests.lifecycle.conftest import Proc, wait_until

from .conftest import NAMESPACE


def test_run_agent_in_kubernetes_mode_makes_pods_not_processes(process_env, api_double, register_version, tmp_path):
    version = register_version("llama-k8s", Path("/models/checkpoints/llama-k8s"))
    dep = Deployment.objects.create(name="chat", model_version=version, device="neuron", cores_per_replica=2)
    env = {**process_env, "APPLIANCE_REPLICA_BACKEND": "kubernetes", "APPLIANCE_K8S_API_HOST": api_double.url,
           "APPLIANCE_K8S_NAMESPACE": NAMESPACE, "APPLIANCE_K8S_IMAGE": "registry.example/appliance:test",
           "APPLIANCE_K8S_CORES": "4", "APPLIANCE_K8S_NODE_NAME": "eks-cli"}
    agent = Proc([sys.executable, "manage.py", "run_agent", "--tick", "0.2"], env, tmp_path / "controller.log")
    try:
        agent.wait_for("replica controller on eks-cli: neuron, 4 cores as pods in namespace appliance-test", 60)
        [pod] = wait_until(lambda: api_double.pods(NAMESPACE), 30, "the replica's pod")
        replica = wait_until(lambda: dep.replicas.filter(state=Replica.State.STARTING).first(), 30, "starting")
        assert replica.pid is None and replica.node.name == "eks-cli"
        api_double.mark_ready(pod["metadata"]["name"], "10.1.2.3")
        wait_until(lambda: dep.replicas.filter(state=Replica.State.READY, host="10.1.2.3", port=8100).exists(), 30,
                   "the replica ready at its pod IP")
    finally:
        agent.stop()
    assert api_double.pods(NAMESPACE), "stopping the controller must leave the replica pods serving"
    assert "replica controller stopped" in agent.output()


@pytest.mark.django_db
def test_an_unknown_replica_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("APPLIANCE_REPLICA_BACKEND", "nomad")
    with pytest.raises(CommandError, match="APPLIANCE_REPLICA_BACKEND must be one of process, kubernetes, got 'nomad'"):
        call_command("run_agent")


@pytest.mark.django_db
def test_kubernetes_mode_without_a_core_budget_says_what_to_set(monkeypatch, api_double):
    for name, value in {"APPLIANCE_REPLICA_BACKEND": "kubernetes", "APPLIANCE_K8S_API_HOST": api_double.url,
                        "APPLIANCE_K8S_IMAGE": "img:1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CommandError, match="APPLIANCE_K8S_CORES is not set"):
        call_command("run_agent")
    monkeypatch.delenv("APPLIANCE_K8S_IMAGE")
    with pytest.raises(CommandError, match="APPLIANCE_K8S_IMAGE is not set"):
        call_command("run_agent")
