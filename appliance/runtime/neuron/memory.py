"""Estimate device memory per NeuronCore (weights + KV cache) from a model config and compile options.

An estimate, not a measurement: it counts parameters and cache entries. Embeddings are counted whole on every core
(NxD Inference's default is a replicated embedding, vocab_parallel=False); everything else is divided across the
tensor-parallel degree; KV heads follow the GQA sharding rules in ModelShape.kv_heads_per_core. A share of the HBM is
kept back for activations, the scratchpad and the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.runtime.neuron.instances import GIB, HBM_PER_CORE_BYTES
from appliance.runtime.neuron.model_shape import ModelShape

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
USABLE_FRACTION = 0.9  # of each core's HBM; the rest is headroom for activations, scratchpad and runtime


@dataclass(frozen=True)
class MemoryEstimate:
    weight_bytes_per_core: int
    kv_bytes_per_core: int
    usable_bytes_per_core: int

    @property
    def total_bytes_per_core(self) -> int:
        return self.weight_bytes_per_core + self.kv_bytes_per_core

    @property
    def fits(self) -> bool:
        return self.total_bytes_per_core <= self.usable_bytes_per_core

    def describe(self) -> str:
        return (
            f"weights {self.weight_bytes_per_core / GIB:.2f} GiB + KV cache {self.kv_bytes_per_core / GIB:.2f} GiB "
            f"= {self.total_bytes_per_core / GIB:.2f} GiB per NeuronCore "
            f"(usable {self.usable_bytes_per_core / GIB:.2f} GiB of {HBM_PER_CORE_BYTES / GIB:.0f} GiB HBM)"
        )


def estimate(shape: ModelShape, tp_degree: int, dtype: str, int8_weights: bool, kv_tokens: int) -> MemoryEstimate:
    """Per-core bytes for weights and a KV cache holding `kv_tokens` token positions in total."""
    act = DTYPE_BYTES[dtype]
    lin = 1 if int8_weights else act
    h, hd = shape.hidden_size, shape.head_dim
    kv_per_core = shape.kv_heads_per_core(tp_degree)
    q_heads_per_core = -(-shape.num_heads // tp_degree)
    attn = h * q_heads_per_core * hd * 2 + h * kv_per_core * hd * 2  # q, o ; k, v
    mlp = 3 * h * -(-shape.intermediate_size // tp_degree)
    per_layer = (attn + mlp) * lin + 2 * h * act
    embed = shape.vocab_size * h * act
    lm_head = -(-shape.vocab_size // tp_degree) * h * act
    weights = shape.num_layers * per_layer + embed + lm_head + h * act
    kv = 2 * shape.num_layers * kv_per_core * hd * act * kv_tokens
    return MemoryEstimate(weights, kv, int(HBM_PER_CORE_BYTES * USABLE_FRACTION))
