"""The one dispatch layer for the model's hot operations.

These are the PyTorch reference implementations, used on the CPU and CUDA. The Neuron executor routes the same
names, with the same signatures, to NKI kernels (nki_kernels/); model code calls only these functions.
Shapes: T tokens, H hidden, I intermediate, Hq/Hkv query/key-value heads, D head_dim, B sequences.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F


class _Scratch(threading.local):
    """Reused gather buffers, per thread: a fresh multi-megabyte tensor per call costs page faults that dwarf the
    copy itself."""

    def __init__(self) -> None:
        self.buffers: dict[tuple, torch.Tensor] = {}

    def take(self, slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (slot, like.dtype, like.device)
        numel = 1
        for n in shape:
            numel *= n
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)


_scratch = _Scratch()


def gather_blocks(cache: torch.Tensor, block_ids: torch.Tensor, slot: int) -> torch.Tensor:
    """cache[num_blocks, block_size, Hkv, D] rows ``block_ids`` (long [n]) -> [n * block_size, Hkv, D], in a reused
    buffer (``slot`` tells apart buffers alive at the same time; the result is valid until the next call)."""
    num_blocks, block_size, hkv, d = cache.shape
    out = _scratch.take(slot, (block_ids.numel(), block_size * hkv * d), cache)
    torch.index_select(cache.view(num_blocks, -1), 0, block_ids, out=out)
    return out.view(-1, hkv, d)


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
    k = gather_blocks(k_cache, flat, 0).view(b, -1, hkv, d)
    v = gather_blocks(v_cache, flat, 1).view(b, -1, hkv, d)
    valid = torch.arange(k.shape[1], device=q.device)[None, :] < context_lens[:, None]
    # The query heads sharing a KV head act as that head's "query positions": one SDPA call, no repeat of K/V.
    out = F.scaled_dot_product_attention(
        q.view(b, hkv, hq // hkv, d), k.transpose(1, 2), v.transpose(1, 2), attn_mask=valid[:, None, None, :],
        scale=scale,
    )
    return out.reshape(b, hq, d)
