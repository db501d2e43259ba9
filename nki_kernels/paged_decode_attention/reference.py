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
    context_lens int32 [B] (each >= 1) -> [B, Hq, D].

    Sequence b attends to its first context_lens[b] cached tokens; token t lives in block block_tables[b, t // bs]
    at offset t % bs. Query head h reads kv head h // (Hq // Hkv). Entries of block_tables past a sequence's last
    block are ignored. Scores, softmax and the weighted sum run in float32.
    """
    batch, heads, dim = q.shape
    num_blocks, block_size, kv_heads, _ = k_cache.shape
    if heads % kv_heads:
        raise ValueError(f"paged_decode_attention: query heads {heads} must be a multiple of kv heads {kv_heads}")
    if block_tables.shape[0] != batch or context_lens.shape != (batch,):
        raise ValueError("paged_decode_attention: block_tables and context_lens need one row per sequence")
    group = heads // kv_heads
    out = torch.empty_like(q)
    for b in range(batch):
        length = int(context_lens[b])
        if not 1 <= length <= block_tables.shape[1] * block_size:
            raise ValueError(f"paged_decode_attention: context_lens[{b}]={length} is outside 1..max_blocks*block_size")
        blocks = block_tables[b, : (length + block_size - 1) // block_size].long()
        keys = k_cache[blocks].reshape(-1, kv_heads, dim)[:length].float().repeat_interleave(group, dim=1)
        values = v_cache[blocks].reshape(-1, kv_heads, dim)[:length].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,thd->ht", q[b].float(), keys) * scale
        out[b] = torch.einsum("ht,thd->hd", torch.softmax(scores, dim=-1), values).to(q.dtype)
    return out
