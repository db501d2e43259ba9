"""The appliance's own NxD Inference model class for the Llama family: NxD Inference's Llama with the project's NKI
kernels in the graph it compiles.

NxD Inference compiles its own model graph, so the engine's dispatch layer never runs there; the kernels have to be
modules of the NxD Inference model. Following NxD Inference 0.8's custom-model onboarding (subclass
NeuronBaseForCausalLM / the Llama classes, set `_model_cls`, give `get_config_cls`, build the decoder layers in
`init_model`), `appliance_llama_class(api, kernels)` builds, from SDK module objects handed in (nothing here imports
the SDK), subclasses of models/llama/modeling_llama.py's classes (commit cd3abf3):

| kernel | replaces | as in NxD Inference |
|---|---|---|
| rms_norm | CustomRMSNorm of input/post-attention/final norms | `get_rmsnorm_cls`, modules/custom_calls.py |
| rotary_embedding | `NeuronAttentionBase.apply_rotary_embedding` | modules/attention/attention_base.py |
| swiglu_mlp | `NeuronLlamaMLP._native_mlp`: rank's shards, then all-reduce | `NeuronLlamaMLP._kernel_enabled_mlp` |
| paged_decode_attention | `NeuronAttentionBase.attention_tokengen` with the block KV layout | `compute_for_token_gen` |

Kernels are traced the way modeling_llama.py `import_nki_mlp_tkg_kernel` does: the `nki.jit` decoration peeled and
re-applied with mode="torchxla" and the platform target. Not compiled or run on Neuron here (no SDK); checked
against a labelled stand-in of these classes (tests/neuron/test_nxdi_llama.py).

`api` is any object with these attributes (appliance.runtime.neuron.sdk.load_nxdi_kernel_api() imports them):
    modeling_llama       neuronx_distributed_inference.models.llama.modeling_llama; used: NeuronLlamaForCausalLM,
                         NeuronLlamaModel, NeuronLlamaDecoderLayer, NeuronLlamaAttention, NeuronLlamaMLP,
                         LlamaInferenceConfig, get_rmsnorm_cls, get_updated_configs, ParallelEmbedding,
                         ColumnParallelLinear, parallel_state, get_tp_group
    mappings             neuronx_distributed.parallel_layers.mappings; used: reduce_from_tensor_model_parallel_region
    nki_jit              neuronxcc.nki.jit (the Beta 1 namespace, see nki_kernels/_nki.py)
    get_platform_target  torch_neuronx.utils.get_platform_target
    peel_decorations     neuronx_distributed_inference.utils.decorator_peeling.peel_decorations
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

OPERATIONS = ("rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention")


def traced_kernels(api: Any, kernels: tuple[str, ...]) -> dict[str, Callable]:
    """{op: the nki_kernels kernel, re-jitted for torch-xla on this platform} (modeling_llama.py l.119-124)."""
    import nki_kernels

    target = api.get_platform_target()
    return {
        op: api.nki_jit(api.peel_decorations(getattr(nki_kernels, op).kernel), mode="torchxla", platform_target=target)
        for op in kernels
    }


def check_config(config: Any, kernels: tuple[str, ...]) -> None:
    """Raise ValueError when a NeuronConfig feature would bypass or break one of `kernels` in the graph."""
    nc = config.neuron_config
    on = lambda name: bool(getattr(nc, name, False))  # noqa: E731
    problems = []
    if on("is_eagle_draft") or on("is_medusa"):
        problems.append("EAGLE/Medusa draft models are not built by the appliance's Llama class")
    if "rms_norm" in kernels:
        if getattr(config, "original_hidden_size", None) is not None:
            problems.append("rms_norm: padded_hidden_size is not supported")
        if on("qkv_kernel_enabled") or on("qkv_nki_kernel_enabled"):
            problems.append("rms_norm: NxD Inference's QKV kernel fuses the input norm; turn qkv kernels off")
    if "swiglu_mlp" in kernels:
        for flag in ("mlp_kernel_enabled", "quantized_mlp_kernel_enabled", "quantized", "lora_config"):
            if on(flag):
                problems.append(f"swiglu_mlp: not with {flag}")
        if getattr(config, "mlp_bias", False) or getattr(config, "hidden_act", "silu") != "silu":
            problems.append("swiglu_mlp: needs hidden_act silu and no MLP bias")
        if getattr(nc, "mlp_cp_degree", 1) != 1:
            problems.append("swiglu_mlp: mlp_cp_degree > 1 is not supported")
    if "paged_decode_attention" in kernels:
        if not (on("is_block_kv_layout") and on("is_prefix_caching")) or on("is_chunked_prefill"):
            problems.append("paged_decode_attention: needs the block KV layout with prefix caching")
        for flag in ("kv_quant_config", "flash_decoding_enabled", "k_cache_transposed", "attn_tkg_nki_kernel_enabled",
                     "attn_tkg_builtin_kernel_enabled", "attn_block_tkg_nki_kernel_enabled"):
            if on(flag):
                problems.append(f"paged_decode_attention: not with {flag}")
    if problems:
        raise ValueError("appliance Llama kernels: " + "; ".join(problems))


def appliance_llama_class(
    api: Any, kernels: tuple[str, ...], *, implementations: Mapping[str, Callable] | None = None
) -> type:
    """A NeuronLlamaForCausalLM subclass whose graph calls the project's NKI kernels named in `kernels` (use
    kernel_support.resolve_kernels to choose them); the others stay NxD Inference's stock modules. The class
    attribute `appliance_kernels` records the kernels it puts in the graph. `implementations` replaces the traced
    kernels ({op: callable with the dispatch-layer signature}), for tests and emulators."""
    kernels = tuple(kernels)
    unknown = [k for k in kernels if k not in OPERATIONS]
    if unknown:
        raise ValueError(f"unknown kernel {unknown[0]!r}; known: {', '.join(OPERATIONS)}")
    impl = dict(implementations) if implementations is not None else traced_kernels(api, kernels)
    ml = api.modeling_llama
    use = set(kernels)

    class KernelRMSNorm(nn.Module):
        """RMSNorm by the rms_norm kernel; a `weight` parameter like CustomRMSNorm (modules/custom_calls.py), so the
        checkpoint's `*layernorm.weight` / `norm.weight` keys load unchanged."""

        def __init__(self, hidden_size: int, eps: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden_size))
            self.variance_epsilon = eps

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            rows = hidden_states.reshape(-1, hidden_states.shape[-1])
            out = impl["rms_norm"](rows, self.weight.to(hidden_states.dtype), self.variance_epsilon)
            return out.view(hidden_states.shape)

    def rms_norm(config: Any) -> nn.Module:
        if "rms_norm" in use:
            return KernelRMSNorm(config.hidden_size, config.rms_norm_eps)
        return ml.get_rmsnorm_cls(hidden_size=config.hidden_size,
                                  unpadded_hidden_size=getattr(config, "original_hidden_size", None),
                                  eps=config.rms_norm_eps)

    class KernelLlamaMLP(ml.NeuronLlamaMLP):
        """gate/up (column-parallel, [I/tp, H] per rank) and down (row-parallel, [H, I/tp]) shards go to the
        swiglu_mlp kernel as they are; its per-rank partial sums are all-reduced over the tensor-parallel group, as
        NeuronLlamaMLP._kernel_enabled_mlp does after its MLP kernel (reduce in rpl_reduce_dtype when set, as
        RowParallelLinear does)."""

        def _native_mlp(self, x: torch.Tensor, adapter_ids: Any = None) -> torch.Tensor:
            if self.sequence_parallel_enabled:
                raise NotImplementedError("swiglu_mlp kernel with sequence parallelism")
            rows = x.reshape(-1, x.shape[-1])
            out = impl["swiglu_mlp"](rows, self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
            reduce_dtype = getattr(self.neuron_config, "rpl_reduce_dtype", None)
            if reduce_dtype is not None:
                out = out.to(reduce_dtype)
            out = api.mappings.reduce_from_tensor_model_parallel_region(
                out, process_group=self.tensor_model_parallel_group
            )
            return out.to(x.dtype).view(*x.shape[:-1], out.shape[-1])

    class KernelLlamaAttention(ml.NeuronLlamaAttention):
        """NeuronLlamaAttention with rotary embedding and/or token-generation attention by the kernels. Heads are
        already this rank's (num_heads / tp), so both kernels run per rank; o_proj and its all-reduce are NxD's."""

        _kv_mgr: Any = None

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            # The KV cache manager is a named argument of NeuronAttentionBase.forward and does not reach
            # attention_tokengen; keep it for the duration of the call.
            self._kv_mgr = kwargs.get("kv_mgr")
            try:
                return super().forward(*args, **kwargs)
            finally:
                self._kv_mgr = None

        def apply_rotary_embedding(self, Q, K, V, position_ids, cos_cache, sin_cache, use_polar_compatible_rope):
            if "rotary_embedding" not in use or use_polar_compatible_rope or self.rotary_emb is None:
                return super().apply_rotary_embedding(Q, K, V, position_ids, cos_cache, sin_cache,
                                                      use_polar_compatible_rope)
            if cos_cache is None or sin_cache is None:
                cos_cache, sin_cache = self.rotary_emb(V, position_ids)
            b, hq, s, d = Q.shape
            q = Q.transpose(1, 2).reshape(b * s, hq, d)  # BHSD -> tokens x heads x head_dim
            k = K.transpose(1, 2).reshape(b * s, K.shape[1], d)
            cos = cos_cache.expand(b, s, d).reshape(b * s, d)
            sin = sin_cache.expand(b, s, d).reshape(b * s, d)
            q, k = impl["rotary_embedding"](q, k, cos, sin)
            return (q.view(b, s, hq, d).transpose(1, 2), k.view(b, s, K.shape[1], d).transpose(1, 2),
                    cos_cache, sin_cache)

        def attention_tokengen(self, Q, K, V, attention_mask, position_ids, past_key_value, active_mask, **kwargs):
            if not self._paged_kernel_applies(Q, kwargs):
                return super().attention_tokengen(Q, K, V, attention_mask, position_ids, past_key_value,
                                                  active_mask, **kwargs)
            # The kernel reads this step's token from the cache (context_lens include it), so write K/V into a
            # copy of the layer's block cache first, with the manager's own scatter (BlockKVCacheManager).
            k_cache, v_cache = self._kv_mgr.update_kv_by_layer_id(
                idx=kwargs["idx"], kv_per_layer=(K, V), scatter_index=kwargs["scatter_index"],
                kvcache_buffer=kwargs.get("kvcache_buffer"),
            )
            block_size = self.neuron_config.pa_block_size  # block tiling is a view of the same layout
            k_cache = k_cache.reshape(-1, block_size, *k_cache.shape[-2:])
            v_cache = v_cache.reshape(-1, block_size, *v_cache.shape[-2:])
            out = impl["paged_decode_attention"](
                Q[:, :, 0, :], k_cache, v_cache, kwargs["active_block_table"].to(torch.int32),
                (position_ids[:, -1] + 1).to(torch.int32), 1.0 / math.sqrt(self.head_dim),
            )
            return out.unsqueeze(2)  # BHSD with S = 1

        def _paged_kernel_applies(self, Q: torch.Tensor, kwargs: dict) -> bool:
            return ("paged_decode_attention" in use and Q.shape[2] == 1 and self._kv_mgr is not None
                    and getattr(self, "dp_degree", 1) == 1
                    and all(kwargs.get(k) is not None for k in ("idx", "scatter_index", "active_block_table")))

    attention_kernels = use & {"rotary_embedding", "paged_decode_attention"}

    class ApplianceLlamaDecoderLayer(ml.NeuronLlamaDecoderLayer):
        def __init__(self, config: Any) -> None:
            super().__init__(config)
            if attention_kernels:  # built once more: NeuronLlamaDecoderLayer picks its class from a module map
                self.self_attn = KernelLlamaAttention(config=config)
            if "rms_norm" in use:
                if self.input_layernorm is not None:
                    self.input_layernorm = rms_norm(config)
                self.post_attention_layernorm = rms_norm(config)

        def init_mlp(self, config: Any) -> None:
            if "swiglu_mlp" not in use:
                return super().init_mlp(config)
            self.mlp_cp_degree = 1
            if ml.parallel_state.model_parallel_is_initialized():
                group = ml.parallel_state.get_tensor_model_parallel_group()
            else:
                group = ml.get_tp_group(config)
            self.mlp = KernelLlamaMLP(config, group)

    class ApplianceLlamaModel(ml.NeuronLlamaModel):
        """NeuronLlamaModel.init_model for a plain (non-draft) Llama, with the appliance's decoder layers."""

        def init_model(self, config: Any) -> None:
            check_config(config, kernels)
            self.padding_idx = config.pad_token_id
            self.vocab_size = config.vocab_size
            nc = config.neuron_config
            if ml.parallel_state.model_parallel_is_initialized():
                self.embed_tokens = ml.ParallelEmbedding(
                    config.vocab_size, config.hidden_size, self.padding_idx, dtype=nc.torch_dtype,
                    shard_across_embedding=not nc.vocab_parallel,
                    sequence_parallel_enabled=nc.sequence_parallel_enabled,
                    sequence_dimension=self.sequence_dimension, tile_cc=nc.tile_cc, pad=True,
                    tensor_model_parallel_group=ml.get_tp_group(config), use_spmd_rank=nc.vocab_parallel,
                )
                self.lm_head = ml.ColumnParallelLinear(
                    config.hidden_size, config.vocab_size, gather_output=not self.on_device_sampling,
                    dtype=nc.torch_dtype, bias=False, pad=True, tensor_model_parallel_group=ml.get_tp_group(config),
                )
            else:
                self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
                self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            self.layers = nn.ModuleList(ApplianceLlamaDecoderLayer(c) for c in ml.get_updated_configs(config))
            self.norm = rms_norm(config)
            self.is_medusa = False
            self.num_medusa_heads = 0
            self.medusa_speculation_length = 0
            self.attention_chunk_size = getattr(config, "attention_chunk_size", None)

    class ApplianceLlamaForCausalLM(ml.NeuronLlamaForCausalLM):
        _model_cls = ApplianceLlamaModel
        appliance_kernels = tuple(op for op in OPERATIONS if op in use)

        @classmethod
        def get_config_cls(cls) -> type:
            return ml.LlamaInferenceConfig

    ApplianceLlamaForCausalLM.modules = SimpleNamespace(
        rms_norm=KernelRMSNorm, mlp=KernelLlamaMLP, attention=KernelLlamaAttention,
        decoder_layer=ApplianceLlamaDecoderLayer, model=ApplianceLlamaModel,
    )
    return ApplianceLlamaForCausalLM
