"""Neuron plans for registered models and checkpoint directories (the neuron_plan command and the deploy form)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.catalog.models import Model, ModelVersion
from appliance.runtime.neuron.instances import INSTANCES
from appliance.runtime.neuron.plan import NeuronPlan, make_plan


class PlanInputError(ValueError):
    """The model or its config cannot be found; the message says what to give instead."""


def version_config(version: ModelVersion) -> tuple[dict[str, Any], int | None]:
    """(config.json, bytes of its safetensors files or None) for a registered version."""
    src = Path(version.source_uri)
    local = not version.source_uri.startswith("s3://") and src.is_dir()
    config = version.config
    if not config and local and (src / "config.json").is_file():
        config = json.loads((src / "config.json").read_text())
    if not config:
        raise PlanInputError(f"{version} has no config.json recorded and {version.source_uri} has none to read; "
                             "register the checkpoint again")
    weights = sum(p.stat().st_size for p in src.glob("*.safetensors")) if local else 0
    return dict(config), weights or None


def resolve_model(name_or_dir: str) -> tuple[str, dict[str, Any], int | None]:
    """(label, config.json, checkpoint bytes) for a registered model's latest version or a checkpoint directory."""
    path = Path(name_or_dir)
    if (path / "config.json").is_file():  # a directory holding a checkpoint wins over a model of the same name
        weights = sum(p.stat().st_size for p in path.glob("*.safetensors"))
        return str(path), json.loads((path / "config.json").read_text()), weights or None
    model = Model.objects.filter(name=name_or_dir).first()
    if model is not None:
        version = model.versions.order_by("-version").first()
        if version is None:
            raise PlanInputError(f"model {name_or_dir!r} has no versions; register one with register_model")
        return str(version), *version_config(version)
    raise PlanInputError(f"{name_or_dir!r} is neither a registered model nor a checkpoint directory with a "
                         "config.json; see `python manage.py register_model`")


def plan_model(name_or_dir: str, instance: str | None, options: Mapping[str, Any] | None = None) -> NeuronPlan:
    """The plan for a registered model (latest version) or a checkpoint directory on `instance`."""
    label, config, weights = resolve_model(name_or_dir)
    return make_plan(config, instance or None, options, model=label, checkpoint_bytes=weights)


def deploy_instance_type() -> str | None:
    """The instance type a neuron deployment compiles and loads on: this node's, else any neuron node's."""
    from appliance.catalog.models import Node
    from appliance.lifecycle.compile_runner import node_instance_type

    here = node_instance_type()
    if here in INSTANCES:
        return here
    known = Node.objects.filter(device="neuron", instance_type__in=list(INSTANCES))
    return known.values_list("instance_type", flat=True).first()


def plan_for_deploy(version: ModelVersion, cores_per_replica: int) -> NeuronPlan:
    """The plan of the neuron artifact a deployment of `version` serves: the newest existing neuron artifact's
    options, else those of the compile the deployment would queue (tp_degree = cores per replica)."""
    from appliance.lifecycle.compile_runner import neuron_options
    from appliance.lifecycle.models import CompileJob

    config, weights = version_config(version)
    artifact = version.artifacts.filter(target="neuron").order_by("-created_at").first()
    fields = dict(artifact.options) if artifact else {"tp_degree": cores_per_replica, "dtype": version.dtype}
    fields.pop("target", None)
    job = CompileJob(model_version=version, target="neuron", **fields)
    return make_plan(config, deploy_instance_type(), neuron_options(job, Path(version.source_uri)),
                     model=str(version), checkpoint_bytes=weights)
