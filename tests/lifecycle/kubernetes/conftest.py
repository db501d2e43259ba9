"""Kubernetes-mode fixtures: the stand-in API server (a TEST DOUBLE, api_server_double.py) and a controller whose
real `kubernetes` client is pointed at it, over the real test PostgreSQL and Redis."""
from __future__ import annotations

import pytest

from appliance.lifecycle.kubernetes.config import KubernetesConfig

from .api_server_double import KubernetesApiDouble

NAMESPACE = "appliance-test"


@pytest.fixture
def api_double():
    double = KubernetesApiDouble().start()
    yield double
    double.stop()


@pytest.fixture
def k8s_config(api_double) -> KubernetesConfig:
    return KubernetesConfig(
        node_name="eks-test", device="neuron", cores=8, namespace=NAMESPACE,
        image="registry.example/appliance:test", models_claim="appliance-models",
        service_account="appliance-replica", node_selector={"node.kubernetes.io/instance-type": "inf2.48xlarge"},
        api_host=api_double.url,
    )


@pytest.fixture
def controller(k8s_config, monkeypatch):
    from appliance.lifecycle.kubernetes.controller import ControllerOptions, ReplicaController

    monkeypatch.setenv("APPLIANCE_RESTART_BACKOFF_BASE_S", "0")  # replace an evicted pod on the next pass
    return ReplicaController(k8s_config, ControllerOptions(tick_s=0.1, autoscale=False, place=True))
