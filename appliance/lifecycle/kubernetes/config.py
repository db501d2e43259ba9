"""The Kubernetes backend's settings: a Django setting of the same name wins, then the environment variable."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

BACKEND_SETTING = "APPLIANCE_REPLICA_BACKEND"
BACKENDS = ("process", "kubernetes")


def _get(name: str, default: str) -> str:
    from django.conf import settings

    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, default)
    return str(value)


def replica_backend() -> str:
    """`process` (the node agent starts OS processes; the default) or `kubernetes` (this package)."""
    backend = _get(BACKEND_SETTING, "process").strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"{BACKEND_SETTING} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _positive_int(name: str, default: str) -> int:
    text = _get(name, default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class KubernetesConfig:
    """Where and how replica pods are made. `cores` is the cluster's budget of NeuronCores (GPUs, CPU slots) that
    placement may hand out; the Neuron device plugin picks the actual cores of each pod."""

    node_name: str
    device: str
    cores: int
    namespace: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    replica_port: int = 8100
    models_claim: str = ""  # a ReadWriteMany PersistentVolumeClaim mounted read-only at models_mount ("": none)
    models_mount: str = "/models"
    service_account: str = ""  # the replicas' own (they need no API access); "" = the namespace's default
    config_map: str = "appliance-config"  # non-secret environment for replicas (envFrom), e.g. LOG_LEVEL
    node_selector: dict[str, str] = field(default_factory=dict)
    api_host: str = ""  # "" = in-cluster configuration (the pod's ServiceAccount), else this API server URL

    @classmethod
    def from_settings(cls) -> KubernetesConfig:
        from django.conf import settings

        device = _get("APPLIANCE_K8S_DEVICE", "neuron")
        if device not in ("neuron", "cuda", "cpu"):
            raise ValueError(f"APPLIANCE_K8S_DEVICE must be neuron, cuda or cpu, got {device!r}")
        image = _get("APPLIANCE_K8S_IMAGE", "")
        if not image:
            raise ValueError("APPLIANCE_K8S_IMAGE is not set: name the appliance image the replica pods run")
        selector = {}
        for pair in filter(None, _get("APPLIANCE_K8S_NODE_SELECTOR", "").split(",")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"APPLIANCE_K8S_NODE_SELECTOR wants key=value pairs, got {pair!r}")
            selector[key.strip()] = value.strip()
        return cls(
            node_name=_get("APPLIANCE_K8S_NODE_NAME", f"{settings.NODE_NAME}"),
            device=device,
            cores=_positive_int("APPLIANCE_K8S_CORES", "0"),
            namespace=_get("APPLIANCE_K8S_NAMESPACE", "") or _in_cluster_namespace(),
            image=image,
            image_pull_policy=_get("APPLIANCE_K8S_IMAGE_PULL_POLICY", "IfNotPresent"),
            replica_port=_positive_int("APPLIANCE_K8S_REPLICA_PORT", "8100"),
            models_claim=_get("APPLIANCE_K8S_MODELS_CLAIM", ""),
            models_mount=_get("APPLIANCE_K8S_MODELS_MOUNT", "/models"),
            service_account=_get("APPLIANCE_K8S_REPLICA_SERVICE_ACCOUNT", ""),
            config_map=_get("APPLIANCE_K8S_CONFIG_MAP", "appliance-config"),
            node_selector=selector,
            api_host=_get("APPLIANCE_K8S_API_HOST", ""),
        )


NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _in_cluster_namespace() -> str:
    try:
        with open(NAMESPACE_FILE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"
