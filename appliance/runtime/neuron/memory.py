"""Estimate device memory per NeuronCore (weights + KV cache), and host memory to compile and load, from a model config.

Estimates, not measurements: they count parameters and cache entries.

Device memory: embeddings are counted whole on every core (NxD Inference's default is a replicated embedding,
vocab_parallel=False); everything else is divided across the tensor-parallel degree; KV heads follow the GQA sharding
rules in ModelShape.kv_heads_per_core. A share of the HBM is kept back for activations, the scratchpad and the runtime.

Host memory (see host_estimate), following how NxD Inference 0.8 with save_sharded_checkpoint=True handles weights:

* compile = state dict + one rank's shard + baseline. `NeuronApplicationBase.compile` traces without weights, then
  `shard_weights` -> NxD `ModelBuilder.shard_checkpoint` (neuronx_distributed/trace/model_builder.py): the checkpoint
  loader reads the full Hugging Face state dict (`get_state_dict` -> modules/checkpoint.py `load_state_dict`, every
  safetensors file), converts and casts it to the compile dtype (`checkpoint_loader_fn`), then for each rank slices
  it and writes `weights/tp<rank>_sharded_checkpoint.safetensors` (`shard_weights_with_cache`: `.contiguous()`
  copies and safetensors' `save_file` serialises the whole rank in memory). The state dict is counted whole at
  max(checkpoint dtype, compile dtype) bytes per parameter because sharding touches every page of it.
  With quantization="int8" the compile first builds the quantized checkpoint (`generate_quantized_state_dict`:
  transformers `from_pretrained`, float32 by default, quantized in place): parameters x (4 + 1) bytes.
* load of the pre-sharded artifact = one rank's shard + baseline. `load_weights` reads every local rank's file with
  safetensors `load_file` into one list before `nxd_model.initialize` copies it to the NeuronCores. With safetensors
  0.8.0 (measured here: RssFile grows, RssAnon does not) those tensors map the files, so their pages are file-backed
  and can be dropped once copied; a safetensors that copies into anonymous memory would need every rank's shard
  (about the whole model) instead, and this estimate would be too low.
* baseline = the Python process with torch, torch-neuronx and NxD Inference imported, plus neuronx-cc's working set.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.runtime.neuron.instances import GIB, HBM_PER_CORE_BYTES, InstanceType, smallest_with_host_memory
from appliance.runtime.neuron.model_shape import ModelShape

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
USABLE_FRACTION = 0.9  # of each core's HBM; the rest is headroom for activations, scratchpad and runtime
PROCESS_BASELINE_BYTES = 3 * GIB  # python + torch + torch-neuronx + NxD Inference, and neuronx-cc (an allowance)
FLOAT32_BYTES = 4  # transformers' default load dtype, used by NxD Inference's int8 quantization step


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


def parameter_count(shape: ModelShape) -> int:
    """Parameters of a Llama-family decoder: embeddings, attention, SwiGLU MLP, norms, and the LM head unless tied."""
    h, hd = shape.hidden_size, shape.head_dim
    attn = h * shape.num_heads * hd * 2 + h * shape.num_kv_heads * hd * 2
    per_layer = attn + 3 * h * shape.intermediate_size + 2 * h
    head = 0 if shape.tie_word_embeddings else shape.vocab_size * h
    return shape.vocab_size * h + shape.num_layers * per_layer + h + head


@dataclass(frozen=True)
class HostMemoryEstimate:
    """Host memory (bytes) to compile (load and shard the checkpoint) and to load the pre-sharded artifact."""

    state_dict_bytes: int  # the full checkpoint as the compile holds it
    quantize_bytes: int  # building the int8 checkpoint; 0 without quantization
    shard_bytes_per_rank: int  # one rank's sharded weights
    baseline_bytes: int
    usable_bytes: int | None  # the instance's usable host memory; None when no instance is known

    @property
    def compile_bytes(self) -> int:
        shard = self.state_dict_bytes + self.shard_bytes_per_rank
        return max(shard, self.quantize_bytes) + self.baseline_bytes

    @property
    def load_bytes(self) -> int:
        return self.shard_bytes_per_rank + self.baseline_bytes

    @property
    def compile_fits(self) -> bool:
        return self.usable_bytes is None or self.compile_bytes <= self.usable_bytes

    @property
    def load_fits(self) -> bool:
        return self.usable_bytes is None or self.load_bytes <= self.usable_bytes

    def compile_parts(self) -> str:
        """What the compile estimate adds up."""
        if self.quantize_bytes > self.state_dict_bytes + self.shard_bytes_per_rank:
            return f"int8 quantization {gib(self.quantize_bytes)} + baseline {gib(self.baseline_bytes)}"
        return (f"checkpoint {gib(self.state_dict_bytes)} + one rank's shard {gib(self.shard_bytes_per_rank)} + "
                f"baseline {gib(self.baseline_bytes)}")

    def describe(self) -> str:
        of = "" if self.usable_bytes is None else f"; usable {gib(self.usable_bytes)}"
        return f"compile {gib(self.compile_bytes)} ({self.compile_parts()}), load {gib(self.load_bytes)}{of}"


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def host_estimate(
    shape: ModelShape, device: MemoryEstimate, dtype: str, int8_weights: bool, instance: InstanceType | None = None,
    checkpoint_bytes: int | None = None,
) -> HostMemoryEstimate:
    """Host memory to compile and load; `checkpoint_bytes` (the safetensors files' size) replaces the parameter
    count for the checkpoint."""
    params = parameter_count(shape)
    source = checkpoint_bytes or params * DTYPE_BYTES.get(shape.torch_dtype or dtype, DTYPE_BYTES[dtype])
    return HostMemoryEstimate(
        state_dict_bytes=max(source, params * DTYPE_BYTES[dtype]),  # cast to the compile dtype when that is wider
        quantize_bytes=params * (FLOAT32_BYTES + 1) if int8_weights else 0,
        shard_bytes_per_rank=device.weight_bytes_per_core,
        baseline_bytes=PROCESS_BASELINE_BYTES,
        usable_bytes=instance.usable_host_memory_bytes if instance else None,
    )


def host_refusals(host: HostMemoryEstimate, instance: InstanceType, tp_degree: int) -> list[tuple[str, str]]:
    """(reason, fix) for each of compile and load that will not fit the instance's host memory."""
    out: list[tuple[str, str]] = []
    have = f"{instance.name} has {instance.host_memory_gib} GiB ({gib(instance.usable_host_memory_bytes)} usable)"
    if not host.load_fits:
        bigger = smallest_with_host_memory(host.load_bytes, instance.family, tp_degree)
        out.append((
            f"loading the compiled model needs about {gib(host.load_bytes)} of host memory (one rank's shard "
            f"{gib(host.shard_bytes_per_rank)} + baseline {gib(host.baseline_bytes)}, an estimate); {have}",
            f"deploy on {bigger.name if bigger else 'a larger instance'}, raise tp_degree, or set quantization='int8'"))
    if not host.compile_fits:
        bigger = smallest_with_host_memory(host.compile_bytes, instance.family, tp_degree)
        where = bigger.name if bigger else f"a larger {instance.family} instance"
        sized = f" ({bigger.host_memory_gib} GiB)" if bigger else ""
        then = (f", whose weights/tp<rank>_sharded_checkpoint.safetensors load here with about {gib(host.load_bytes)}"
                if host.load_fits else "")
        out.append((
            f"compiling needs about {gib(host.compile_bytes)} of host memory to load and shard the checkpoint "
            f"({host.compile_parts()}, an estimate); {have}",
            f"use pre-sharded weights or {where}: compile on {where}{sized} and copy the artifact{then}"))
    return out
