"""EMULATOR (test double): what a compiled NxD Inference graph computes, on the CPU with the project's PyTorch model.

The layer body is the project's Llama decoder (appliance/runtime/model/llama.py) through the kernel dispatch layer,
so kernels installed there (the NKI kernels on the simulator, when an artifact enables them) run inside the emulated
graph. Attention and KV writes follow NxD Inference 0.8's semantics rather than the engine's:

* KV caches: block layout ``[pa_num_blocks + 1, pa_block_size, kv_heads, head_dim]`` with the last block reserved
  for writes of slot -1 (``modules/kvcache/block_kv_cache_manager.py``: ``_NUM_EXTRA_RESERVED_BLOCK``,
  ``_update_cache_with_reshape``); contiguous layout one line per batch row of ``max_length`` positions (+128 with
  ``apply_seq_ids_mask``, the zone padded rows write to).
* Context encoding attends over the cached prefix (read through the block table) plus the active tokens, causally;
  padding keys (attention mask 0) are never attended.
* Token generation writes the new token's KV, then attends to every earlier position of its line or blocks.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from appliance.runtime import kernels
from appliance.runtime.model.llama import LlamaForCausalLM

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def run_layers(model: LlamaForCausalLM, input_ids: torch.Tensor, positions: torch.Tensor, attend: Attend
               ) -> torch.Tensor:
    """input_ids/positions long [T] -> final hidden states [T, H]; `attend(layer, q, k, v)` does attention + KV."""
    a = model.args
    t = input_ids.shape[0]
    h = F.embedding(input_ids, model.embed)
    cos, sin = model.cos[positions], model.sin[positions]
    for i, layer in enumerate(model.layers):
        x = kernels.rms_norm(h, layer.input_norm, a.rms_norm_eps)
        q, k, v = F.linear(x, layer.w_qkv, layer.b_qkv).split([model.q_size, model.kv_size, model.kv_size], dim=-1)
        q, k = kernels.rotary_embedding(q.reshape(t, a.num_heads, a.head_dim), k.reshape(t, a.num_kv_heads, a.head_dim),
                                        cos, sin)
        o = attend(i, q, k, v.reshape(t, a.num_kv_heads, a.head_dim))
        h = h + F.linear(o.reshape(t, model.q_size), layer.w_o)
        x = kernels.rms_norm(h, layer.post_norm, a.rms_norm_eps)
        h = h + kernels.swiglu_mlp(x, layer.w_gate, layer.w_up, layer.w_down)
    return h


def write(cache: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """Scatter rows of values [T, Hkv, D] to flat slots (already redirected away from -1)."""
    cache.view(-1, *cache.shape[2:]).index_copy_(0, slots, values)


def attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, visible: torch.Tensor, scale: float
              ) -> torch.Tensor:
    """q [T, Hq, D] over keys/values [S, Hkv, D] where visible[T, S] -> [T, Hq, D]."""
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], keys.transpose(0, 1)[None], values.transpose(0, 1)[None],
        attn_mask=visible[None, None], scale=scale, enable_gqa=True)
    return o[0].transpose(0, 1)
