"""deploy/kubernetes/ validated offline against the Kubernetes 1.31 schemas (kubernetes-validate, strict: an unknown
field fails), and the replica pods the controller builds with the official client validated the same way. No
cluster runs in these tests; none has run the manifests."""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kubernetes_example import EXAMPLE, example_pod, example_yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31"  # EKS standard support; the schemas kubernetes-validate ships for it
FILES = sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for p in FILES for d in documents(p) if d["kind"] == kind}


def validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_manifest_validates_against_the_kubernetes_schema(path):
    docs = documents(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        validate(doc)


def test_the_validation_rejects_a_broken_manifest():
    beat = documents(MANIFESTS / "beat.yaml")[0]
    beat["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError, match="not of type 'integer'"):
        validate(beat)
    worker = documents(MANIFESTS / "worker.yaml")[0]
    worker["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"  # a typo: strict refuses it
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePulPolicy"):
        validate(worker)


def test_the_kustomization_applies_every_manifest_but_the_templates():
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    assert all((MANIFESTS / name).is_file() for name in listed)
    assert sorted(listed) == sorted(p.name for p in FILES if not p.name.endswith(".example.yaml"))


def test_the_secret_template_names_the_external_services():
    secret = documents(MANIFESTS / "secret.example.yaml")[0]
    assert {"DATABASE_URL", "REDIS_URL", "ARTIFACT_STORE_URL"} <= set(secret["stringData"])
    for deployment in resources("Deployment").values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"secretRef": {"name": "appliance-secrets"}} in container["envFrom"], deployment["metadata"]["name"]


def unit_command(unit: str) -> list[str]:
    line = next(l for l in (ROOT / "ami" / "systemd" / unit).read_text().splitlines() if l.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    return [Path(argv[0]).name, *argv[1:]]


def test_web_worker_and_beat_run_the_ami_units_commands():
    deployments = resources("Deployment")
    command = {name: deployments[f"appliance-{name}"]["spec"]["template"]["spec"]["containers"][0]["command"]
               for name in ("web", "worker", "beat")}
    assert command["worker"] == unit_command("appliance-worker.service")
    assert command["beat"][:4] == unit_command("appliance-beat.service")[:4]
    web = unit_command("appliance-web.service")
    assert command["web"][:2] == web[:2] and "--workers" in command["web"]  # TCP behind nginx instead of --uds


def test_the_controller_role_allows_the_pod_and_secret_calls_it_makes():
    [role] = resources("Role").values()
    allowed = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    assert {("pods", v) for v in ("create", "delete", "get", "list", "watch")} <= allowed
    assert {("secrets", "create"), ("secrets", "delete")} <= allowed
    [binding] = resources("RoleBinding").values()
    controller = resources("Deployment")["appliance-replica-controller"]
    assert binding["subjects"][0]["name"] == controller["spec"]["template"]["spec"]["serviceAccountName"]
    assert controller["spec"]["replicas"] == 1 and controller["spec"]["strategy"]["type"] == "Recreate"


def test_the_controller_manifest_settings_make_a_valid_configuration(monkeypatch):
    from appliance.lifecycle.kubernetes.config import KubernetesConfig, replica_backend

    container = resources("Deployment")["appliance-replica-controller"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "manage.py", "run_agent"]
    for var in container["env"]:
        monkeypatch.setenv(var["name"], var.get("value", "appliance"))  # the namespace comes from the downward API
    assert replica_backend() == "kubernetes"
    config = KubernetesConfig.from_settings()
    assert (config.node_name, config.device, config.cores, config.namespace) == ("eks", "neuron", 24, "appliance")
    assert config.models_claim in resources("PersistentVolumeClaim")
    assert config.service_account in resources("ServiceAccount")
    assert config.node_selector == {"node.kubernetes.io/instance-type": "inf2.48xlarge"}


def test_the_replica_pod_example_is_what_the_controller_builds():
    assert EXAMPLE.read_text() == example_yaml(), "regenerate it: python -m tests.deploy.kubernetes_example"
    pod = example_pod()
    validate(pod)
    engine = pod["spec"]["containers"][0]
    assert engine["resources"]["limits"] == {"aws.amazon.com/neuroncore": "2"}
    policy = resources("NetworkPolicy")["appliance-replicas"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == engine["ports"][0]["containerPort"]


@pytest.mark.parametrize("device,resource", [("neuron", "aws.amazon.com/neuroncore"), ("cuda", "nvidia.com/gpu"),
                                             ("cpu", "cpu")])
@pytest.mark.parametrize("model_uri", ["/models/checkpoints/tiny", "s3://bucket/artifacts/" + "0" * 64])
def test_replica_pods_for_every_device_and_model_source_validate(device, resource, model_uri):
    from kubernetes.client import ApiClient

    from appliance.lifecycle.kubernetes.config import KubernetesConfig
    from appliance.lifecycle.kubernetes.pod_spec import ReplicaPodInput, replica_pod, replica_secret

    config = KubernetesConfig(node_name="Cluster One!", device=device, cores=8, namespace="ns", image="img:1")
    spec = ReplicaPodInput(replica_id=7, index=1, deployment="d" * 100, cores=4, device=device, model_uri=model_uri,
                           engine_args={"enable_prefix_caching": True, "max_model_len": 4096})
    serialize = ApiClient().sanitize_for_serialization
    pod = serialize(replica_pod(config, spec, "appliance-replica-7-abcdef"))
    validate(pod)
    validate(serialize(replica_secret(config, spec, "appliance-replica-7-abcdef", "s3cr3t")))
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {resource: "4"}
    assert all(len(v) <= 63 for v in pod["metadata"]["labels"].values())  # label values the API server accepts
    assert pod["metadata"]["labels"]["appliance.io/node"] == "Cluster-One"
    assert ("initContainers" in pod["spec"]) == model_uri.startswith("s3://")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_the_kustomization_renders_offline_into_valid_resources_with_the_image_set():
    rendered = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60,
                              check=False)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for doc in docs:
        validate(doc)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"appliance"}
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    images = {c["image"] for pod in pods for c in pod.get("initContainers", []) + pod["containers"]}
    assert images == {"ACCOUNT.dkr.ecr.REGION.amazonaws.com/appliance:0.1.0", "nginx:1.27"}
    controller = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == "appliance-replica-controller")
    env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["APPLIANCE_K8S_IMAGE"] in images  # the replica pods run the same image as the rest
