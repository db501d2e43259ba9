"""The numbers of a Hugging Face decoder config that compile validation and memory estimates need."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Hugging Face architecture -> NxD Inference model family (the Neuron model class that compiles it).
NXDI_FAMILIES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


@dataclass(frozen=True)
class ModelShape:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    sliding_window: int | None = None
    torch_dtype: str | None = None  # the checkpoint's dtype as config.json states it
    tie_word_embeddings: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any) -> "ModelShape":
        """From a config.json dict or a transformers PretrainedConfig."""
        get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
        archs = get("architectures") or []
        model_type = get("model_type", "")
        arch = archs[0] if archs else {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                       "qwen2": "Qwen2ForCausalLM"}.get(model_type, model_type or "unknown")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads") if get(k) is None]
        if missing:
            raise ValueError(f"model config is missing {', '.join(missing)}")
        heads = int(get("num_attention_heads"))
        hidden = int(get("hidden_size"))
        return cls(
            architecture=arch,
            vocab_size=int(get("vocab_size")),
            hidden_size=hidden,
            intermediate_size=int(get("intermediate_size")),
            num_layers=int(get("num_hidden_layers")),
            num_heads=heads,
            num_kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            max_position_embeddings=int(get("max_position_embeddings") or 0),
            sliding_window=get("sliding_window"),
            torch_dtype=str(get("torch_dtype") or get("dtype") or "").replace("torch.", "") or None,
            tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        )

    def family(self, backend: str) -> str:
        """The Neuron model family for `backend`, or ValueError saying which architectures it supports."""
        table = NXDI_FAMILIES if backend == "nxdi" else {}
        if self.architecture not in table:
            raise ValueError(
                f"backend {backend!r} cannot compile {self.architecture}; it supports {', '.join(sorted(table))}"
            )
        return table[self.architecture]

    def kv_heads_per_core(self, tp_degree: int) -> int:
        """KV heads each core holds, following NxD Inference's GQA sharding rules.

        REPLICATE_TO_TP_DEGREE when TP divides or is a multiple of the KV heads; otherwise CONVERT_TO_MHA (every query
        head gets its own KV head, so each core holds num_heads / tp).
        """
        if self.num_kv_heads % tp_degree == 0:
            return self.num_kv_heads // tp_degree
        if tp_degree % self.num_kv_heads == 0:
            return 1
        return max(1, self.num_heads // tp_degree)
