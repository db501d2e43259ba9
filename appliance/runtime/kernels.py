"""The one dispatch layer for the model's hot operations.

These are the PyTorch reference implementations, used on the CPU and CUDA. The Neuron executor routes the same
names, with the same signatures, to NKI kernels (nki_kernels/); model code calls only these functions.
Shapes: T tokens, H hidden, I intermediate, Hq/Hkv query/key-value heads, D head_dim, B sequences.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x[T,H], weight[H] -> [T,H]; the variance in float32, as Hugging Face's LlamaRMSNorm."""
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q[T,Hq,D], k[T,Hkv,D], cos/sin[T,D] (the rotate_half convention of Hugging Face) -> (q, k)."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def swiglu_mlp(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """x[T,H], w_gate[I,H], w_up[I,H], w_down[H,I] (nn.Linear [out,in] layout) -> [T,H]."""
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One query token per sequence against its cached keys/values, read through its block table.

    q[B,Hq,D]; k_cache/v_cache[num_blocks, block_size, Hkv, D]; block_tables int32[B, max_blocks] (entries past a
    sequence's blocks are ignored); context_lens int32[B] (tokens in the cache, this step's token included) ->
    [B,Hq,D].
    """
    b, hq, d = q.shape
    num_blocks, block_size, hkv, _ = k_cache.shape
    flat = block_tables.reshape(-1).long()
    k = k_cache.view(num_blocks, -1).index_select(0, flat).view(b, -1, hkv, d)
    v = v_cache.view(num_blocks, -1).index_select(0, flat).view(b, -1, hkv, d)
    valid = torch.arange(k.shape[1], device=q.device)[None, :] < context_lens[:, None]
    # The query heads sharing a KV head act as that head's "query positions": one SDPA call, no repeat of K/V.
    out = F.scaled_dot_product_attention(
        q.view(b, hkv, hq // hkv, d), k.transpose(1, 2), v.transpose(1, 2), attn_mask=valid[:, None, None, :],
        scale=scale,
    )
    return out.reshape(b, hq, d)


OPERATIONS = ("rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention")
REFERENCES = {name: globals()[name] for name in OPERATIONS}


def use_implementations(table: dict | None = None) -> None:
    """Route the operations named in `table` to other implementations with the same signatures (the Neuron executor
    installs the NKI kernels this way when the compile job enabled kernels); None restores the PyTorch references.
    Model code looks the functions up on this module at call time, so the switch applies to the whole process."""
    table = dict(table or {})
    unknown = sorted(set(table) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"unknown kernel operation {unknown[0]!r}; known: {', '.join(OPERATIONS)}")
    for name in OPERATIONS:
        globals()[name] = table.get(name, REFERENCES[name])
