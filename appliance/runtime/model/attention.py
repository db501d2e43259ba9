"""Attention over the paged KV cache: write this step's K/V into its slots, then read through block tables.

Tokens of a step are laid out decodes first (one query token per sequence, served by the batched
``kernels.paged_decode_attention``), then prefill chunks (several query tokens of one sequence each, causal, over the
sequence's cached prefix plus the chunk).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from appliance.runtime import kernels


@dataclass
class PrefillChunk:
    start: int  # first token of the chunk in the step's flat token layout
    end: int
    context_len: int  # tokens in the cache once the chunk is written (cached prefix + chunk)
    block_table: torch.Tensor  # long [blocks]


@dataclass
class DecodeGroup:
    """Decodes [start, end) of similar context length, so padding their block tables to a common width is cheap."""

    start: int
    end: int
    block_tables: torch.Tensor  # int32 [end - start, max_blocks of the group]
    context_lens: torch.Tensor  # int32 [end - start]


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # long [T]: block_id * block_size + offset for every token of the step
    num_decode_tokens: int
    decode_groups: list[DecodeGroup] = field(default_factory=list)
    prefills: list[PrefillChunk] = field(default_factory=list)


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    kv_written: bool = False,
) -> torch.Tensor:
    """q[T,Hq,D], k/v[T,Hkv,D] of this step; caches [num_blocks, block_size, Hkv, D] -> [T,Hq,D]. ``kv_written``:
    k and v are in the caches already (kernels.cpu_rotary_write_kv put them there)."""
    num_blocks, block_size, hkv, d = k_cache.shape
    if not kv_written:
        k_cache.view(-1, hkv, d).index_copy_(0, meta.slot_mapping, k)
        v_cache.view(-1, hkv, d).index_copy_(0, meta.slot_mapping, v)
    out = torch.empty_like(q)
    for g in meta.decode_groups:
        out[g.start : g.end] = kernels.paged_decode_attention(
            q[g.start : g.end], k_cache, v_cache, g.block_tables, g.context_lens, scale
        )
    for chunk in meta.prefills:
        qs = q[chunk.start : chunk.end]
        n = chunk.end - chunk.start
        if chunk.context_len == n:
            ks, vs = k[chunk.start : chunk.end], v[chunk.start : chunk.end]
            mask, causal = None, True
        else:
            ks = kernels.gather_blocks(k_cache, chunk.block_table, 0)[: chunk.context_len]
            vs = kernels.gather_blocks(v_cache, chunk.block_table, 1)[: chunk.context_len]
            offset = chunk.context_len - n
            rows = torch.arange(n, device=q.device)[:, None] + offset
            mask, causal = torch.arange(chunk.context_len, device=q.device)[None, :] <= rows, False
        o = F.scaled_dot_product_attention(  # 4-D inputs: the CPU flash kernel (3-D falls back to the math path)
            qs.transpose(0, 1)[None], ks.transpose(0, 1)[None], vs.transpose(0, 1)[None],
            attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True,
        )
        out[chunk.start : chunk.end] = o[0].transpose(0, 1)
    return out
