"""PyTorch reference for decode attention over a paged KV cache (one query token per sequence, GQA)."""
from __future__ import annotations

import torch


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """q [B, Hq, D]; k_cache/v_cache [num_blocks, block_size, Hkv, D]; block_tables int32 [B, max_blocks];
    context_lens int32 [B] (each >= 1, this step's token included) -> [B, Hq, D].

    Sequence b attends to its first context_lens[b] cached tokens; token t lives in block block_tables[b, t // bs]
    at offset t % bs. Query head h reads kv head h // (Hq // Hkv). Table entries past a sequence's blocks are
    ignored (clamped into range, then masked). Scores come from a matmul in the input dtype, softmax runs in
    float32, and the probabilities are cast back for P @ V: the same numerics as the engine's dispatch layer.
    """
    batch, heads, dim = q.shape
    num_blocks, block_size, kv_heads, _ = k_cache.shape
    if heads % kv_heads:
        raise ValueError(f"paged_decode_attention: query heads {heads} must be a multiple of kv heads {kv_heads}")
    if v_cache.shape != k_cache.shape:
        raise ValueError("paged_decode_attention: v_cache must have k_cache's shape")
    if block_tables.shape[0] != batch or context_lens.shape != (batch,):
        raise ValueError("paged_decode_attention: block_tables and context_lens need one row per sequence")
    blocks = block_tables.long().clamp(0, num_blocks - 1)
    length = blocks.shape[1] * block_size
    keys = k_cache[blocks].view(batch, length, kv_heads, dim)
    values = v_cache[blocks].view(batch, length, kv_heads, dim)
    grouped = q.view(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.einsum("bhgd,blhd->bhgl", grouped, keys).float() * scale
    past_end = torch.arange(length, device=q.device)[None, :] >= context_lens[:, None]
    scores.masked_fill_(past_end[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return torch.einsum("bhgl,blhd->bhgd", probs, values).reshape(batch, heads, dim)
