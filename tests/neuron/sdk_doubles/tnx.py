"""TEST DOUBLE of transformers-neuronx 0.13 (and torch_neuronx): records calls, writes placeholder NEFF files.

See the package docstring for what this does and does not prove. Signatures follow the transformers-neuronx source:
NeuronConfig(*, continuous_batching=None, quant=None, padding_side='left', ...);
ContinuousBatchingConfig(batch_size_for_shared_caches=...); QuantizationConfig(quant_dtype='s8', dequant_dtype=...);
LlamaForSampling.from_pretrained(path, batch_size=, tp_degree=, amp=, n_positions=, context_length_estimate=,
neuron_config=), to_neuron(), save(directory), load(directory), forward(input_ids, cache_ids=None, start_ids=None).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.neuron.sdk_doubles import Recorder, fake_logits


def build_modules(rec: Recorder, version: str) -> dict[str, ModuleType]:
    class NeuronConfig:
        def __init__(self, *, continuous_batching: Any = None, quant: Any = None, padding_side: str = "left",
                     **kwargs: Any):
            rec.record("NeuronConfig", continuous_batching=continuous_batching, quant=quant,
                       padding_side=padding_side, **kwargs)
            self.continuous_batching = continuous_batching
            self.quant = quant

    class ContinuousBatchingConfig:
        def __init__(self, **kwargs: Any):
            rec.record("ContinuousBatchingConfig", **kwargs)
            self.batch_size_for_shared_caches = kwargs.get("batch_size_for_shared_caches")

    class QuantizationConfig:
        def __init__(self, quant_dtype: str = "s8", dequant_dtype: str = "f16", **kwargs: Any):
            rec.record("QuantizationConfig", quant_dtype=quant_dtype, dequant_dtype=dequant_dtype, **kwargs)

    def sampling_class(name: str) -> type:
        class ForSampling:
            @classmethod
            def from_pretrained(cls, pretrained_model_path: str, **kwargs: Any) -> "ForSampling":
                rec.record(f"{name}.from_pretrained", pretrained_model_path=pretrained_model_path, **kwargs)
                nc = kwargs.get("neuron_config")
                if nc is not None and nc.continuous_batching is not None:
                    if nc.continuous_batching.batch_size_for_shared_caches != kwargs.get("batch_size"):
                        raise AssertionError("double: batch_size_for_shared_caches must equal batch_size")
                model = cls()
                model.kwargs = kwargs
                model.vocab = json.loads(Path(pretrained_model_path, "config.json").read_text())["vocab_size"]
                model.artifacts_dir = None
                model.compiled = False
                return model

            def _graphs(self) -> list[str]:
                keys = [f"ctx{n}" for n in self.kwargs["context_length_estimate"]]
                keys += [f"tok{n}-b{self.kwargs['batch_size']}" for n in self.kwargs["n_positions"]]
                return [hashlib.sha256(k.encode()).hexdigest()[:20] + ".neff" for k in keys]

            def to_neuron(self) -> None:
                if self.artifacts_dir is not None:
                    missing = [g for g in self._graphs() if not Path(self.artifacts_dir, g).is_file()]
                    if missing:
                        raise FileNotFoundError(f"double: could not find a matching NEFF: {missing}")
                rec.record(f"{name}.to_neuron", from_artifacts=self.artifacts_dir,
                           visible_cores=os.environ.get("NEURON_RT_VISIBLE_CORES"))
                self.compiled = True

            def save(self, directory: str) -> None:
                if not self.compiled:
                    raise AssertionError("double: cannot save a model which has not been compiled")
                rec.record(f"{name}.save", directory=directory)
                Path(directory).mkdir(parents=True, exist_ok=True)
                for g in self._graphs():
                    Path(directory, g).write_bytes(b"neff placeholder")

            def load(self, directory: str) -> None:
                rec.record(f"{name}.load", directory=directory)
                self.artifacts_dir = directory

            def forward(self, input_ids: Any, cache_ids: Any = None, start_ids: Any = None, **kwargs: Any) -> Any:
                if not self.compiled:
                    raise RuntimeError("double: forward before to_neuron")
                rec.record(f"{name}.forward", input_ids=input_ids, cache_ids=cache_ids, start_ids=start_ids, **kwargs)
                return fake_logits(input_ids, self.vocab)

        ForSampling.__name__ = name
        return ForSampling

    def module(name: str, **attrs: Any) -> ModuleType:
        m = ModuleType(name)
        m.__doc__ = "TEST DOUBLE (tests/neuron/sdk_doubles): not the AWS Neuron SDK."
        m.__dict__.update(attrs)
        return m

    return {
        "torch_neuronx": module("torch_neuronx", __version__="2.8.0.2.10.16998"),
        "transformers_neuronx": module(
            "transformers_neuronx",
            __version__=version,
            NeuronConfig=NeuronConfig,
            ContinuousBatchingConfig=ContinuousBatchingConfig,
            QuantizationConfig=QuantizationConfig,
            LlamaForSampling=sampling_class("LlamaForSampling"),
            MistralForSampling=sampling_class("MistralForSampling"),
        ),
    }
