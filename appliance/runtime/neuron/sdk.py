"""The one place that imports the AWS Neuron SDK (or, when asked for, its labelled emulator): pins and loaders.

Nothing else in the appliance imports ``torch_neuronx`` or ``neuronx_distributed_inference``. The loaders import on
first use, so a machine without the SDK (a laptop, CI) can import the appliance and only fails, with a message saying
what is missing and how to get it, when the neuron target is selected.

Pins (from the Neuron release manifest, ``src/helperscripts/n2-manifest.json`` in aws-neuron/aws-neuron-sdk): Neuron
SDK 2.28.1, the last release whose NxD Inference supports Inf2 and Trn1 (2.29 dropped NKI kernels on Trn1/Inf2 and
NxD Inference moved to Trn2 and newer). NxD Inference 0.8 requires ``transformers==4.57.*`` (its setup.py at the
2.28.0 release): its ``utils/hf_adapter.py`` imports names transformers 5 removed, so a mismatch is refused here with
the reason instead of surfacing as an ImportError deep inside a compile.

``APPLIANCE_NEURON_SDK=emulator`` loads ``appliance.runtime.neuron.emulator`` instead: the project's TEST DOUBLE of
the parts of NxD Inference 0.8 the appliance calls, computing with the project's PyTorch model on the CPU. It is for
CI and development only, says so in every log line and artifact manifest, and is refused on a machine where the real
SDK imports. The transformers-neuronx backend was removed (see docs/neuron.md).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

NEURON_SDK_RELEASE = "2.28.1"
NXDI_VERSION = "0.8.16251"
TORCH_NEURONX_VERSION = "2.9.0.2.12.22436"
NEURONX_CC_VERSION = "2.23.6484.0"
NEURON_TOOLS_VERSION = "2.28.23.0"
TRANSFORMERS_SERIES = "4.57"  # neuronx-distributed-inference 0.8 setup.py: install_requires "transformers==4.57.*"

NEURON_PIP_INDEX = "https://pip.repos.neuron.amazonaws.com"
ALLOW_VERSION_MISMATCH_ENV = "APPLIANCE_NEURON_ALLOW_VERSION_MISMATCH"
SDK_ENV = "APPLIANCE_NEURON_SDK"  # unset: the real SDK; "emulator": the project's labelled test double
EMULATOR = "emulator"

_PINS: dict[str, tuple[str, str]] = {  # python module -> (distribution name, pinned version)
    "torch_neuronx": ("torch-neuronx", TORCH_NEURONX_VERSION),
    "neuronx_distributed_inference": ("neuronx-distributed-inference", NXDI_VERSION),
}


class NeuronSDKUnavailable(RuntimeError):
    """The Neuron SDK packages are not installed, not the pinned release, or do not import."""


def _check_backend(backend: str) -> None:
    if backend != "nxdi":
        raise ValueError(f"backend must be 'nxdi' (transformers-neuronx was removed), got {backend!r}")


def emulated() -> bool:
    """Whether this process runs the SDK emulator; refuses it where the real SDK is installed."""
    if os.environ.get(SDK_ENV, "") != EMULATOR:
        return False
    if _real_sdk_present():
        raise NeuronSDKUnavailable(
            f"{SDK_ENV}=emulator on a machine where the real Neuron SDK (neuronx_distributed_inference) is installed: "
            "the emulator is a test double and is never used in its place; unset the variable")
    return True


def _real_sdk_present() -> bool:
    try:
        return importlib.util.find_spec("neuronx_distributed_inference") is not None
    except (ImportError, ValueError):  # a module put in sys.modules without a spec counts as present
        return True


def _how_to_get() -> str:
    pins = " ".join(f"{dist}=={ver}" for dist, ver in _PINS.values())
    return (
        f"Run the appliance from its AMI (ami/, Neuron SDK {NEURON_SDK_RELEASE}) on an inf2/trn1 instance, or install "
        f"the pinned packages: pip install --extra-index-url {NEURON_PIP_INDEX} {pins} 'transformers=="
        f"{TRANSFORMERS_SERIES}.*'"
    )


def installed_version(module: ModuleType | None, dist_name: str) -> str | None:
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


def require(backend: str = "nxdi") -> dict[str, ModuleType]:
    """Import the SDK's packages or raise NeuronSDKUnavailable naming each missing or mismatched one and the fix."""
    _check_backend(backend)
    if emulated():
        from appliance.runtime.neuron import emulator

        return {"neuronx_distributed_inference": emulator}
    modules: dict[str, ModuleType] = {}
    missing: list[str] = []
    for name in _PINS:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc.__class__.__name__}: {exc})")
    if missing:
        raise NeuronSDKUnavailable(
            f"The neuron target needs the AWS Neuron SDK {NEURON_SDK_RELEASE}, but these packages are not importable "
            f"on this machine: {', '.join(missing)}. {_how_to_get()}"
        )
    if os.environ.get(ALLOW_VERSION_MISMATCH_ENV) != "1":
        wrong = []
        for name, (dist, pinned) in _PINS.items():
            found = installed_version(modules[name], dist)
            if not _same_release(found, pinned):
                wrong.append(f"{dist} {found or 'unknown'} (pinned {pinned})")
        transformers = installed_version(None, "transformers")
        if not (transformers or "").startswith(TRANSFORMERS_SERIES + "."):
            wrong.append(f"transformers {transformers or 'not installed'} (NxD Inference {NXDI_VERSION} requires "
                         f"{TRANSFORMERS_SERIES}.*; its hf_adapter imports names transformers 5 removed)")
        if wrong:
            raise NeuronSDKUnavailable(
                f"The neuron target is pinned to Neuron SDK {NEURON_SDK_RELEASE}, found {', '.join(wrong)}. "
                f"{_how_to_get()} Set {ALLOW_VERSION_MISMATCH_ENV}=1 to run anyway (untested)."
            )
    return modules


def versions(backend: str = "nxdi") -> dict[str, str]:
    """The SDK versions a compiled artifact records (installed where importable, else the pins). Under the emulator
    they say so: an emulated artifact never passes for a real one."""
    _check_backend(backend)
    out = {"neuron_sdk_release": NEURON_SDK_RELEASE}
    if emulated():
        from appliance.runtime.neuron import emulator

        return {**out, "emulator": emulator.LABEL, "neuronx-distributed-inference": f"{NXDI_VERSION} (emulated)"}
    for name, (dist, pinned) in _PINS.items():
        try:
            out[dist] = installed_version(importlib.import_module(name), dist) or pinned
        except ImportError:
            out[dist] = pinned
    out["neuronx-cc"] = installed_version(None, "neuronx-cc") or NEURONX_CC_VERSION
    return out


def toolchain_version() -> str:
    """One line naming the toolchain an artifact was built with (part of the compile job's content address);
    NeuronSDKUnavailable where the SDK is absent."""
    require()
    v = versions()
    if "emulator" in v:
        return f"neuron-sdk-{NEURON_SDK_RELEASE}-emulator"
    return (f"neuron-sdk-{NEURON_SDK_RELEASE} nxdi-{v['neuronx-distributed-inference']} "
            f"torch-neuronx-{v['torch-neuronx']} neuronx-cc-{v['neuronx-cc']}")


@dataclass(frozen=True)
class NxdiAPI:
    """The NxD Inference names the appliance uses (neuronx-distributed-inference 0.8, Neuron SDK 2.28)."""

    NeuronConfig: Any
    OnDeviceSamplingConfig: Any
    load_pretrained_config: Any
    prepare_sampling_params: Any
    model_classes: dict[str, Any]  # "llama" | "qwen2" -> Neuron*ForCausalLM
    modules: dict[str, ModuleType]  # the imported NxD Inference modules, by dotted name under the package
    emulated: bool = False


NXDI_MODULES = (
    "models.config", "utils.hf_adapter", "modules.generation.sampling", "models.llama.modeling_llama",
    "models.qwen2.modeling_qwen2",
)


def load_nxdi() -> NxdiAPI:
    """NxD Inference 0.8's classes and functions, from the real SDK or (APPLIANCE_NEURON_SDK=emulator) the emulator."""
    require("nxdi")
    if emulated():
        from appliance.runtime.neuron.emulator import api_modules

        mods = api_modules()
        log.warning("NEURON SDK EMULATOR: %s=emulator; NxD Inference %s is a test double computing on the CPU, not "
                    "the AWS Neuron SDK", SDK_ENV, NXDI_VERSION)
    else:
        mods = {}
        for name in NXDI_MODULES:
            try:
                mods[name] = importlib.import_module(f"neuronx_distributed_inference.{name}")
            except ImportError as exc:
                raise NeuronSDKUnavailable(
                    f"NxD Inference is installed but neuronx_distributed_inference.{name} does not import ({exc}); "
                    f"the usual cause is a transformers version other than {TRANSFORMERS_SERIES}.*. {_how_to_get()}"
                ) from exc
    config = mods["models.config"]
    return NxdiAPI(
        NeuronConfig=config.NeuronConfig,
        OnDeviceSamplingConfig=config.OnDeviceSamplingConfig,
        load_pretrained_config=mods["utils.hf_adapter"].load_pretrained_config,
        prepare_sampling_params=mods["modules.generation.sampling"].prepare_sampling_params,
        model_classes={"llama": mods["models.llama.modeling_llama"].NeuronLlamaForCausalLM,
                       "qwen2": mods["models.qwen2.modeling_qwen2"].NeuronQwen2ForCausalLM},
        modules=mods,
        emulated=emulated(),
    )


def load_nxdi_kernel_api() -> Any:
    """The SDK names the appliance's own Llama model class needs to put its NKI kernels into NxD Inference's graph
    (appliance/runtime/neuron/nxdi_llama.py): NxD Inference's Llama modules, NxD's tensor-parallel mappings, and the
    Beta 1 NKI jit (neuronxcc.nki, see nki_kernels/_nki.py)."""
    from types import SimpleNamespace

    require("nxdi")
    imp = importlib.import_module
    return SimpleNamespace(
        modeling_llama=imp("neuronx_distributed_inference.models.llama.modeling_llama"),
        mappings=imp("neuronx_distributed.parallel_layers.mappings"),
        nki_jit=imp("neuronxcc.nki").jit,
        get_platform_target=imp("torch_neuronx.utils").get_platform_target,
        peel_decorations=imp("neuronx_distributed_inference.utils.decorator_peeling").peel_decorations,
    )
