"""transformers-neuronx backend (legacy; transformers-neuronx 0.13.1315, the last release, in Neuron SDK 2.26.1).

Written against the transformers-neuronx source and its continuous-batching developer guide; exercised here only
against test doubles of the SDK, never on Inferentia hardware. Kept for artifacts built before NxD Inference; new
artifacts should use the nxdi backend.

Continuous batching in transformers-neuronx keeps one contiguous KV cache line per sequence (`start_ids` names the
line). A prefill is `forward(input_ids (1, n), cache_ids=arange(n), start_ids=[slot])`; a decode step is one
`forward(input_ids (b, 1), cache_ids=positions (b, 1), start_ids=slots (b,))` for all decoding sequences.
transformers-neuronx pads a decode batch to its compiled batch by writing token 0 at position 0 of the cache lines not
in the call, so every running sequence must decode in every decode step (vLLM v0 scheduling); prompts are prefilled
whole (no chunked prefill, no prefix caching).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.runtime.neuron.options import NeuronCompileOptions
from appliance.runtime.neuron.steps import BackendCall, SdkBackend, SeqStep, StepOutput

AMP = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
KWARGS_FILE = "tnx_model_kwargs.json"


def model_kwargs(options: NeuronCompileOptions) -> dict[str, Any]:
    """The from_pretrained keyword arguments (neuron_config described as plain data)."""
    o = options
    b = o.buckets
    neuron_config: dict[str, Any] = {
        "continuous_batching": {"batch_size_for_shared_caches": o.max_batch},
        "padding_side": "right",
    }
    if o.quantization == "int8":
        neuron_config["quant"] = {"quant_dtype": "s8", "dequant_dtype": AMP[o.dtype]}
    return {
        "batch_size": o.max_batch,
        "tp_degree": o.tp_degree,
        "amp": AMP[o.dtype],
        "n_positions": list(b.token_lengths),
        "context_length_estimate": list(b.context_lengths),
        "neuron_config": neuron_config,
    }


class TnxBackend(SdkBackend):
    """One transformers-neuronx model for one artifact (legacy backend, SDK 2.26)."""

    name = "tnx"

    def _load_api(self) -> Any:
        from appliance.runtime.neuron.sdk import load_tnx

        return load_tnx()

    def _from_pretrained(self, model_dir: str | Path, kwargs: dict[str, Any]) -> Any:
        kwargs = dict(kwargs)
        nc = dict(kwargs.pop("neuron_config"))
        cb = self.api.ContinuousBatchingConfig(**nc.pop("continuous_batching"))
        quant = nc.pop("quant", None)
        if quant is not None:
            nc["quant"] = self.api.QuantizationConfig(**quant)
        neuron_config = self.api.NeuronConfig(continuous_batching=cb, **nc)
        cls = self.api.model_classes[self.family]
        return cls.from_pretrained(str(model_dir), neuron_config=neuron_config, **kwargs)

    def compile(self, model_dir: str | Path, artifact_dir: str | Path) -> None:
        """Compile (to_neuron) and save the NEFFs (<hlo hash>.neff per compiled graph) plus the kwargs used."""
        artifact_dir = Path(artifact_dir)
        kwargs = model_kwargs(self.options)
        model = self._from_pretrained(model_dir, kwargs)
        model.to_neuron()
        model.save(str(artifact_dir))
        (artifact_dir / KWARGS_FILE).write_text(json.dumps(kwargs, indent=2))

    def load(self, artifact_dir: str | Path, model_dir: str | Path) -> None:
        """Rebuild the model from the checkpoint with the saved kwargs, point it at the NEFFs, and load to Neuron."""
        kwargs = json.loads((Path(artifact_dir) / KWARGS_FILE).read_text())
        self.model = self._from_pretrained(model_dir, kwargs)
        self.model.load(str(artifact_dir))
        self.model.to_neuron()

    def prefill_call(self, step: SeqStep, length_bucket: int) -> BackendCall:
        import torch

        if step.start_pos != 0:
            raise ValueError(f"sequence {step.seq_id}: transformers-neuronx prefills whole prompts only (got a "
                             f"prefill starting at position {step.start_pos}); disable chunked prefill and prefix "
                             "caching for this backend")
        n = len(step.token_ids)
        kwargs = dict(
            input_ids=torch.tensor([list(step.token_ids)], dtype=torch.long),
            cache_ids=torch.arange(n, dtype=torch.int32).unsqueeze(0),
            start_ids=torch.tensor([step.slot], dtype=torch.int32),
        )
        return BackendCall("prefill", [step.seq_id], kwargs)

    def decode_call(self, steps: list[SeqStep]) -> BackendCall:
        import torch

        kwargs = dict(
            input_ids=torch.tensor([[s.token_ids[0]] for s in steps], dtype=torch.long),
            cache_ids=torch.tensor([[s.start_pos] for s in steps], dtype=torch.int32),
            start_ids=torch.tensor([s.slot for s in steps], dtype=torch.int32),
        )
        return BackendCall("decode", [s.seq_id for s in steps], kwargs)

    def run(self, call: BackendCall) -> StepOutput:
        if self.model is None:
            raise RuntimeError("load() the artifact before running steps")
        logits = self.model.forward(**call.kwargs)
        if logits.dim() == 3:
            logits = logits[:, -1, :]
        return StepOutput(call.seq_ids, logits=logits[: len(call.seq_ids)])
