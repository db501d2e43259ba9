"""The one place that imports the AWS Neuron SDK: pinned versions and lazy loaders.

Nothing else in the appliance imports ``torch_neuronx``, ``neuronx_distributed_inference`` or
``transformers_neuronx``. The loaders import on first use, so a machine without the SDK (a laptop, CI) can import the
appliance and only fails, with a message saying what is missing and how to get it, when the neuron target is
selected.

Pins (from the Neuron release manifest, ``src/helperscripts/n2-manifest.json`` in aws-neuron/aws-neuron-sdk):

* NxD Inference backend: Neuron SDK 2.28.1, the last release whose NxD Inference supports Inf2 and Trn1 (2.29 dropped
  NKI kernels on Trn1/Inf2 and NxD Inference moved to Trn2 and newer).
* transformers-neuronx backend (legacy): Neuron SDK 2.26.1, the last release that ships transformers-neuronx
  (0.13.1315); it is absent from 2.27 onwards. It needs its own virtualenv on the AMI (different torch-neuronx).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

NEURON_SDK_RELEASE = "2.28.1"
NXDI_VERSION = "0.8.16251"
TORCH_NEURONX_VERSION = "2.9.0.2.12.22436"
NEURONX_CC_VERSION = "2.23.6484.0"
NEURON_TOOLS_VERSION = "2.28.23.0"

TNX_SDK_RELEASE = "2.26.1"
TNX_VERSION = "0.13.1315"
TNX_TORCH_NEURONX_VERSION = "2.8.0.2.10.16998"
TNX_NEURONX_CC_VERSION = "2.21.33363.0"

NEURON_PIP_INDEX = "https://pip.repos.neuron.amazonaws.com"
ALLOW_VERSION_MISMATCH_ENV = "APPLIANCE_NEURON_ALLOW_VERSION_MISMATCH"

_PINS: dict[str, dict[str, tuple[str, str]]] = {
    # backend -> python module -> (distribution name, pinned version)
    "nxdi": {
        "torch_neuronx": ("torch-neuronx", TORCH_NEURONX_VERSION),
        "neuronx_distributed_inference": ("neuronx-distributed-inference", NXDI_VERSION),
    },
    "tnx": {
        "torch_neuronx": ("torch-neuronx", TNX_TORCH_NEURONX_VERSION),
        "transformers_neuronx": ("transformers-neuronx", TNX_VERSION),
    },
}
_RELEASE = {"nxdi": NEURON_SDK_RELEASE, "tnx": TNX_SDK_RELEASE}


class NeuronSDKUnavailable(RuntimeError):
    """The Neuron SDK packages a backend needs are not installed (or not the pinned release)."""


def _how_to_get(backend: str) -> str:
    pins = " ".join(f"{dist}=={ver}" for dist, ver in _PINS[backend].values())
    return (
        f"Run the appliance from its AMI (ami/, built on the Neuron DLAMI with Neuron SDK {_RELEASE[backend]}) on an "
        f"inf2/trn1 instance, or install the pinned packages: pip install --extra-index-url {NEURON_PIP_INDEX} {pins}"
    )


def installed_version(module: ModuleType, dist_name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return getattr(module, "__version__", None)


def _same_release(found: str | None, pinned: str) -> bool:
    """Equal up to the last (build) component: torch-neuronx 2.9.0.2.12.x is SDK 2.28, 2.9.0.2.11.x is 2.27."""
    if found is None:
        return False
    return found.split("+")[0].split(".")[:-1] == pinned.split(".")[:-1]


def require(backend: str) -> dict[str, ModuleType]:
    """Import the backend's SDK packages or raise NeuronSDKUnavailable naming each missing one and the fix."""
    if backend not in _PINS:
        raise ValueError(f"backend must be one of {sorted(_PINS)}, got {backend!r}")
    modules: dict[str, ModuleType] = {}
    missing: list[str] = []
    for name in _PINS[backend]:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc.__class__.__name__}: {exc})")
    if missing:
        raise NeuronSDKUnavailable(
            f"The neuron target (backend {backend!r}) needs the AWS Neuron SDK {_RELEASE[backend]}, but these packages "
            f"are not importable on this machine: {', '.join(missing)}. {_how_to_get(backend)}"
        )
    if os.environ.get(ALLOW_VERSION_MISMATCH_ENV) != "1":
        wrong = []
        for name, (dist, pinned) in _PINS[backend].items():
            found = installed_version(modules[name], dist)
            if not _same_release(found, pinned):
                wrong.append(f"{dist} {found or 'unknown'} (pinned {pinned})")
        if wrong:
            raise NeuronSDKUnavailable(
                f"Backend {backend!r} is pinned to Neuron SDK {_RELEASE[backend]}, found {', '.join(wrong)}. "
                f"{_how_to_get(backend)} Set {ALLOW_VERSION_MISMATCH_ENV}=1 to run anyway (untested)."
            )
    return modules


def versions(backend: str) -> dict[str, str]:
    """The SDK versions a compiled artifact records (installed where importable, else the pins)."""
    out = {"neuron_sdk_release": _RELEASE[backend]}
    for name, (dist, pinned) in _PINS[backend].items():
        try:
            out[dist] = installed_version(importlib.import_module(name), dist) or pinned
        except ImportError:
            out[dist] = pinned
    return out


@dataclass(frozen=True)
class NxdiAPI:
    """The NxD Inference names the nxdi backend uses (neuronx-distributed-inference 0.8, Neuron SDK 2.28)."""

    NeuronConfig: Any
    OnDeviceSamplingConfig: Any
    load_pretrained_config: Any
    prepare_sampling_params: Any
    model_classes: dict[str, Any]  # "llama" | "qwen2" -> Neuron*ForCausalLM


def load_nxdi() -> NxdiAPI:
    require("nxdi")
    config = importlib.import_module("neuronx_distributed_inference.models.config")
    hf_adapter = importlib.import_module("neuronx_distributed_inference.utils.hf_adapter")
    sampling = importlib.import_module("neuronx_distributed_inference.modules.generation.sampling")
    llama = importlib.import_module("neuronx_distributed_inference.models.llama.modeling_llama")
    qwen2 = importlib.import_module("neuronx_distributed_inference.models.qwen2.modeling_qwen2")
    return NxdiAPI(
        NeuronConfig=config.NeuronConfig,
        OnDeviceSamplingConfig=config.OnDeviceSamplingConfig,
        load_pretrained_config=hf_adapter.load_pretrained_config,
        prepare_sampling_params=sampling.prepare_sampling_params,
        model_classes={"llama": llama.NeuronLlamaForCausalLM, "qwen2": qwen2.NeuronQwen2ForCausalLM},
    )


@dataclass(frozen=True)
class TnxAPI:
    """The transformers-neuronx names the tnx backend uses (transformers-neuronx 0.13, Neuron SDK 2.26)."""

    NeuronConfig: Any
    ContinuousBatchingConfig: Any
    QuantizationConfig: Any
    model_classes: dict[str, Any]  # "llama" | "mistral" -> *ForSampling


def load_tnx() -> TnxAPI:
    require("tnx")
    tnx = importlib.import_module("transformers_neuronx")
    return TnxAPI(
        NeuronConfig=tnx.NeuronConfig,
        ContinuousBatchingConfig=tnx.ContinuousBatchingConfig,
        QuantizationConfig=tnx.QuantizationConfig,
        model_classes={"llama": tnx.LlamaForSampling, "mistral": tnx.MistralForSampling},
    )
