"""EMULATOR — a TEST DOUBLE of the parts of NxD Inference 0.8 (AWS Neuron SDK 2.28) that the appliance calls.

Selected only by ``APPLIANCE_NEURON_SDK=emulator`` through ``appliance.runtime.neuron.sdk`` (and refused where the
real SDK imports). It mirrors the SDK's configuration checks (config.py), its bucket generation and selection
(buckets.py), its artifact layout, and the static shapes, padding and KV-cache rules of its forward pass
(application.py), computing with the project's PyTorch model on the CPU (graph.py). Kernels an artifact enables run
through the NKI simulator. Every log line and every artifact manifest it produces says it is the emulator.

What it shows: that the appliance configures and drives NxD Inference consistently with the SDK's source, end to end,
with real numbers. What it cannot show: that neuronx-cc compiles these graphs, that the Neuron runtime loads them, or
anything about speed or memory on Inferentia/Trainium. Nothing here has run on Neuron hardware.
"""
from __future__ import annotations

from types import ModuleType

LABEL = "appliance emulator of NxD Inference 0.8.16251 (Neuron SDK 2.28.1) - TEST DOUBLE, not the AWS Neuron SDK"
__version__ = "0.8.16251+emulator"


def api_modules() -> dict[str, ModuleType]:
    """The emulated modules, keyed like appliance.runtime.neuron.sdk.NXDI_MODULES."""
    from appliance.runtime.neuron.emulator import application, config, hf_adapter, sampling

    llama = ModuleType("emulator.modeling_llama")
    llama.NeuronLlamaForCausalLM = application.NeuronLlamaForCausalLM
    qwen2 = ModuleType("emulator.modeling_qwen2")
    qwen2.NeuronQwen2ForCausalLM = application.NeuronQwen2ForCausalLM
    return {"models.config": config, "utils.hf_adapter": hf_adapter, "modules.generation.sampling": sampling,
            "models.llama.modeling_llama": llama, "models.qwen2.modeling_qwen2": qwen2}
