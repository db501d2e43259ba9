"""The example replica pod in deploy/kubernetes/replica-pod.example.yaml: pod_spec.replica_pod's output for one
example replica, under the settings replica-controller.yaml gives the controller.

    python -m tests.deploy.kubernetes_example      rewrites the file (after a change to pod_spec.py)
"""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "kubernetes" / "replica-pod.example.yaml"
HEADER = """\
# NOT APPLIED: the replica controller creates one pod like this per replica, with a Secret of the same name holding
# APPLIANCE_REPLICA_SECRET (made per launch). This is its output for replica 42 of deployment llama-3-8b (2
# NeuronCores, an s3:// artifact) under replica-controller.yaml's settings; tests/deploy keeps the two equal
# (python -m tests.deploy.kubernetes_example rewrites it). Validated offline only: no cluster ran it.
"""
DIGEST = "3f" * 32


def example_pod() -> dict:
    from kubernetes.client import ApiClient

    from appliance.lifecycle.kubernetes.config import KubernetesConfig
    from appliance.lifecycle.kubernetes.pod_spec import ReplicaPodInput, pod_name, replica_pod

    config = KubernetesConfig(
        node_name="eks", device="neuron", cores=24, namespace="appliance",
        image="ACCOUNT.dkr.ecr.REGION.amazonaws.com/appliance:0.1.0", models_claim="appliance-models",
        service_account="appliance-replica", node_selector={"node.kubernetes.io/instance-type": "inf2.48xlarge"},
    )
    spec = ReplicaPodInput(replica_id=42, index=0, deployment="llama-3-8b", cores=2, device="neuron",
                           model_uri=f"s3://BUCKET/artifacts/{DIGEST}", engine_args={"max_num_seqs": 8})
    return ApiClient().sanitize_for_serialization(replica_pod(config, spec, pod_name(42, "a1b2c3")))


def example_yaml() -> str:
    return HEADER + yaml.safe_dump(example_pod(), sort_keys=False, width=120)


if __name__ == "__main__":
    EXAMPLE.write_text(example_yaml())
    print(f"wrote {EXAMPLE}")
