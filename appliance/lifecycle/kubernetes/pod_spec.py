"""The pod (and its Secret) that runs one engine replica, built with the official client's models.

The container runs ``python -m appliance.runtime.server`` as the process agent does (replica_process.py), except that
it binds the pod's IP on a fixed port, asks the Neuron device plugin for its NeuronCores (the plugin sets
NEURON_RT_VISIBLE_CORES), and takes its credential from a Secret made for this launch. deploy/kubernetes/
replica-pod.example.yaml is this function's output for an example replica (a test keeps the two equal).
"""
from __future__ import annotations

import secrets as token
from dataclasses import dataclass

from kubernetes import client

from appliance.runtime.replica_auth import SECRET_ENV

from ..agent.replica_process import engine_flags
from .config import KubernetesConfig

CONTAINER = "engine"
MANAGED_BY = "appliance-replica-controller"
LABEL_NODE = "appliance.io/node"
LABEL_REPLICA = "appliance.io/replica-id"
LABEL_DEPLOYMENT = "appliance.io/deployment"
ANNOTATION_RESTARTS_BEFORE = "appliance.io/restarts-before"  # the row's restart count when this pod was made
MODEL_CACHE = "/var/cache/appliance/models"  # an emptyDir the init container fills from S3
RESOURCE_NAMES = {"neuron": "aws.amazon.com/neuroncore", "cuda": "nvidia.com/gpu", "cpu": "cpu"}


@dataclass(frozen=True)
class ReplicaPodInput:
    """What a replica pod is made from: the Replica row and its Deployment, as plain values."""

    replica_id: int
    index: int
    deployment: str
    cores: int
    device: str
    model_uri: str  # a path visible in the pod (the models volume), or s3://bucket/prefix/<digest>
    engine_args: dict
    restarts_before: int = 0


def label_value(text: str) -> str:
    """A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)[:63]
    return cleaned.strip("._-") or "x"


def pod_name(replica_id: int, launch: str) -> str:
    return f"appliance-replica-{replica_id}-{launch}"


def new_launch() -> str:
    return token.token_hex(3)


def labels(config: KubernetesConfig, spec: ReplicaPodInput) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "appliance-replica",
        "app.kubernetes.io/part-of": "appliance",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_NODE: label_value(config.node_name),
        LABEL_REPLICA: str(spec.replica_id),
        LABEL_DEPLOYMENT: label_value(spec.deployment),
    }


def device_resources(device: str, cores: int) -> client.V1ResourceRequirements:
    """Requests and limits for `cores` NeuronCores (GPUs, CPUs): extended resources need requests == limits."""
    if device not in RESOURCE_NAMES:
        raise ValueError(f"no Kubernetes resource for device {device!r}")
    if cores < 1:
        raise ValueError(f"a replica needs at least one core, got {cores}")
    amount = {RESOURCE_NAMES[device]: str(cores)}
    return client.V1ResourceRequirements(requests=dict(amount), limits=dict(amount))


def model_location(spec: ReplicaPodInput) -> tuple[str, str | None]:
    """(the --model path inside the pod, the s3:// URI the init container fetches or None)."""
    if spec.model_uri.startswith("s3://"):
        digest = spec.model_uri.rstrip("/").rsplit("/", 1)[-1]
        return f"{MODEL_CACHE}/{digest}", spec.model_uri
    return spec.model_uri, None


def replica_command(spec: ReplicaPodInput, model_path: str, port: int) -> list[str]:
    return ["python", "-m", "appliance.runtime.server", "--model", model_path, "--device", spec.device,
            "--host", "0.0.0.0", "--port", str(port), "--served-model-name", spec.deployment,
            *engine_flags({"scheduling_policy": "priority", **(spec.engine_args or {})})]


def health_probe(port: int) -> client.V1Probe:
    """GET /health with the replica's bearer credential (an exec probe: an httpGet probe's headers are literal, and
    the credential must stay in the Secret). /health answers 503 while the model loads, 200 once it serves."""
    script = ("import os, urllib.request as r; r.urlopen(r.Request("
              f"'http://127.0.0.1:{port}/health', headers={{'Authorization': 'Bearer ' + os.environ['{SECRET_ENV}']}}"
              "), timeout=4)")
    return client.V1Probe(_exec=client.V1ExecAction(command=["python", "-c", script]),
                          initial_delay_seconds=5, period_seconds=5, timeout_seconds=5, failure_threshold=3)


def replica_secret(config: KubernetesConfig, spec: ReplicaPodInput, name: str, secret: str) -> client.V1Secret:
    """The launch's credential, which the engine reads from its environment (APPLIANCE_REPLICA_SECRET)."""
    return client.V1Secret(
        api_version="v1", kind="Secret", type="Opaque",
        metadata=client.V1ObjectMeta(name=name, namespace=config.namespace, labels=labels(config, spec)),
        string_data={SECRET_ENV: secret},
    )


def replica_pod(config: KubernetesConfig, spec: ReplicaPodInput, name: str) -> client.V1Pod:
    """The replica's pod; its credential comes from the Secret of the same name."""
    model_path, s3_uri = model_location(spec)
    env = [
        client.V1EnvVar(name=SECRET_ENV, value_from=client.V1EnvVarSource(
            secret_key_ref=client.V1SecretKeySelector(name=name, key=SECRET_ENV))),
        client.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]
    env_from = [client.V1EnvFromSource(config_map_ref=client.V1ConfigMapEnvSource(name=config.config_map,
                                                                                  optional=True))]
    mounts, volumes, init = [], [], []
    if config.models_claim:
        claim = client.V1PersistentVolumeClaimVolumeSource(claim_name=config.models_claim, read_only=True)
        volumes.append(client.V1Volume(name="models", persistent_volume_claim=claim))
        mounts.append(client.V1VolumeMount(name="models", mount_path=config.models_mount, read_only=True))
    if s3_uri:
        volumes.append(client.V1Volume(name="model-cache", empty_dir=client.V1EmptyDirVolumeSource()))
        mounts.append(client.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE))
        init.append(client.V1Container(
            name="fetch-artifact", image=config.image, image_pull_policy=config.image_pull_policy,
            command=["python", "-m", "appliance.lifecycle.kubernetes.fetch_artifact", s3_uri, model_path],
            env_from=env_from, volume_mounts=[client.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE)],
        ))
    engine = client.V1Container(
        name=CONTAINER, image=config.image, image_pull_policy=config.image_pull_policy,
        command=replica_command(spec, model_path, config.replica_port),
        ports=[client.V1ContainerPort(name="engine", container_port=config.replica_port, protocol="TCP")],
        env=env, env_from=env_from, resources=device_resources(spec.device, spec.cores),
        readiness_probe=health_probe(config.replica_port), volume_mounts=mounts or None,
        termination_message_policy="FallbackToLogsOnError",  # a failed load's FAILED line becomes the message
        security_context=client.V1SecurityContext(allow_privilege_escalation=False),
    )
    return client.V1Pod(
        api_version="v1", kind="Pod",
        metadata=client.V1ObjectMeta(name=name, namespace=config.namespace, labels=labels(config, spec),
                                     annotations={ANNOTATION_RESTARTS_BEFORE: str(spec.restarts_before)}),
        spec=client.V1PodSpec(
            containers=[engine], init_containers=init or None, volumes=volumes or None,
            restart_policy="Always", termination_grace_period_seconds=30,
            service_account_name=config.service_account or None, automount_service_account_token=False,
            node_selector=config.node_selector or None,
        ),
    )
