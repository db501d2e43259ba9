"""TEST DOUBLE of neuronx-distributed-inference 0.8 (and torch_neuronx): records calls, writes placeholder files.

See the package docstring for what this does and does not prove. Signatures follow the NxD Inference source:
NeuronConfig(**kwargs); InferenceConfig(neuron_config, load_config=...); load_pretrained_config(path);
prepare_sampling_params(batch_size, top_k, top_p, temperature) -> (batch, 3);
Neuron*ForCausalLM(model_path, config=None) with compile(path), load(path), forward(input_ids, seq_ids,
attention_mask, position_ids, ..., sampling_params, ..., slot_mapping, block_table, full_context_lens,
computed_context_lens) and save_quantized_state_dict(model_path, config) (classmethod).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from tests.neuron.sdk_doubles import Recorder, fake_logits


def build_modules(rec: Recorder, version: str) -> dict[str, ModuleType]:
    mods: dict[str, ModuleType] = {}

    def module(name: str, **attrs: Any) -> ModuleType:
        m = ModuleType(name)
        m.__doc__ = "TEST DOUBLE (tests/neuron/sdk_doubles): not the AWS Neuron SDK."
        m.__dict__.update(attrs)
        mods[name] = m
        return m

    class NeuronConfig:
        def __init__(self, **kwargs: Any):
            rec.record("NeuronConfig", **kwargs)
            self.kwargs = kwargs
            self.__dict__.update(kwargs)

    class OnDeviceSamplingConfig:
        def __init__(self, **kwargs: Any):
            rec.record("OnDeviceSamplingConfig", **kwargs)
            self.kwargs = kwargs

    class InferenceConfig:
        def __init__(self, neuron_config: Any, load_config: Any = None, **kwargs: Any):
            rec.record("InferenceConfig", neuron_config=neuron_config, load_config=load_config)
            self.neuron_config = neuron_config
            if load_config is not None:
                load_config(self)

        def save(self, path: str) -> None:
            data = {"neuron_config": _jsonable(self.neuron_config.kwargs), "hf": getattr(self, "hf", {})}
            Path(path, "neuron_config.json").write_text(json.dumps(data))

        @classmethod
        def load(cls, path: str) -> "InferenceConfig":
            data = json.loads(Path(path, "neuron_config.json").read_text())
            cfg = cls.__new__(cls)
            cfg.neuron_config = SimpleNamespace(kwargs=data["neuron_config"], **data["neuron_config"])
            cfg.hf = data["hf"]
            return cfg

    def load_pretrained_config(model_path: str) -> Any:
        rec.record("load_pretrained_config", model_path=model_path)

        def hook(cfg: Any) -> None:
            cfg.hf = json.loads(Path(model_path, "config.json").read_text())

        return hook

    def prepare_sampling_params(batch_size: int, top_k: Any = (1,), top_p: Any = (1.0,), temperature: Any = (1.0,)):
        import torch

        rec.record("prepare_sampling_params", batch_size=batch_size, top_k=list(top_k), top_p=list(top_p),
                   temperature=list(temperature))
        cols = [torch.tensor(list(v), dtype=torch.float32) for v in (top_k, top_p, temperature)]
        return torch.stack([c.broadcast_to(batch_size) if c.numel() == 1 else c for c in cols], dim=1)

    def model_class(name: str) -> type:
        class NeuronForCausalLM:
            @classmethod
            def get_config_cls(cls) -> type:
                return InferenceConfig

            @classmethod
            def save_quantized_state_dict(cls, model_path: str, config: Any) -> None:
                path = Path(config.neuron_config.quantized_checkpoints_path)
                rec.record(f"{name}.save_quantized_state_dict", model_path=model_path, path=str(path))
                Path(path, "model.safetensors").write_bytes(b"quantized placeholder")

            def __init__(self, model_path: str, config: Any = None):
                rec.record(f"{name}.__init__", model_path=model_path, config=config)
                self.config = config if config is not None else InferenceConfig.load(model_path)
                self.loaded = False

            def compile(self, compiled_model_path: str) -> None:
                rec.record(f"{name}.compile", compiled_model_path=compiled_model_path,
                           compile_cache_url=os.environ.get("NEURON_COMPILE_CACHE_URL"))
                root = Path(compiled_model_path)
                root.mkdir(parents=True, exist_ok=True)
                self.config.save(str(root))
                (root / "model.pt").write_bytes(b"traced model placeholder")
                nc = self.config.neuron_config
                if getattr(nc, "save_sharded_checkpoint", False):
                    (root / "weights").mkdir(exist_ok=True)
                    for rank in range(nc.tp_degree):
                        (root / "weights" / f"tp{rank}_sharded_checkpoint.safetensors").write_bytes(b"shard")

            def load(self, compiled_model_path: str) -> None:
                root = Path(compiled_model_path)
                nc = self.config.neuron_config
                needed = [root / "model.pt", root / "neuron_config.json"]
                needed += [root / "weights" / f"tp{r}_sharded_checkpoint.safetensors" for r in range(nc.tp_degree)]
                missing = [str(p) for p in needed if not p.is_file()]
                if missing:
                    raise FileNotFoundError(f"double: artifact incomplete, missing {missing}")
                rec.record(f"{name}.load", compiled_model_path=compiled_model_path,
                           visible_cores=os.environ.get("NEURON_RT_VISIBLE_CORES"))
                self.loaded = True

            def __call__(self, **kwargs: Any) -> Any:
                return self.forward(**kwargs)

            def forward(self, input_ids: Any = None, seq_ids: Any = None, attention_mask: Any = None,
                        position_ids: Any = None, sampling_params: Any = None, slot_mapping: Any = None,
                        block_table: Any = None, full_context_lens: Any = None,
                        computed_context_lens: Any = None, **rest: Any) -> Any:
                if not self.loaded:
                    raise RuntimeError("double: forward before load")
                args = dict(input_ids=input_ids, seq_ids=seq_ids, attention_mask=attention_mask,
                            position_ids=position_ids, sampling_params=sampling_params, slot_mapping=slot_mapping,
                            block_table=block_table, full_context_lens=full_context_lens,
                            computed_context_lens=computed_context_lens, **rest)
                rec.record(f"{name}.forward", **args)
                vocab = getattr(self.config, "hf", {}).get("vocab_size", rec.vocab_size)
                if full_context_lens is not None:
                    last_idx = (full_context_lens.reshape(-1) - 1 - position_ids[:, 0]).clamp(min=0)
                else:
                    last_idx = (position_ids.argmax(dim=1))
                import torch

                last = input_ids[torch.arange(input_ids.shape[0]), last_idx if input_ids.shape[1] > 1 else 0]
                logits = fake_logits(last.unsqueeze(1), vocab).unsqueeze(1)
                ods = getattr(self.config.neuron_config, "on_device_sampling_config", None)
                if ods is not None:
                    return SimpleNamespace(logits=None, tokens=logits.argmax(-1))
                return SimpleNamespace(logits=logits, tokens=logits.argmax(-1))

        NeuronForCausalLM.__name__ = name
        return NeuronForCausalLM

    module("torch_neuronx", __version__="2.9.0.2.12.22436")
    root = module("neuronx_distributed_inference", __version__=version)
    module("neuronx_distributed_inference.models")
    module("neuronx_distributed_inference.models.config", NeuronConfig=NeuronConfig,
           OnDeviceSamplingConfig=OnDeviceSamplingConfig, InferenceConfig=InferenceConfig)
    module("neuronx_distributed_inference.utils")
    module("neuronx_distributed_inference.utils.hf_adapter", load_pretrained_config=load_pretrained_config)
    module("neuronx_distributed_inference.modules")
    module("neuronx_distributed_inference.modules.generation")
    module("neuronx_distributed_inference.modules.generation.sampling",
           prepare_sampling_params=prepare_sampling_params)
    module("neuronx_distributed_inference.models.llama")
    module("neuronx_distributed_inference.models.llama.modeling_llama",
           NeuronLlamaForCausalLM=model_class("NeuronLlamaForCausalLM"))
    module("neuronx_distributed_inference.models.qwen2")
    module("neuronx_distributed_inference.models.qwen2.modeling_qwen2",
           NeuronQwen2ForCausalLM=model_class("NeuronQwen2ForCausalLM"))
    root.__path__ = []  # a package, so submodule imports resolve through sys.modules
    return mods


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in kwargs.items():
        out[k] = v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else repr(v)
    return out
