"""Decode attention over a paged KV cache as an NKI kernel (one query token per sequence, GQA, block tables).

For each sequence and kv head, the g = Hq / Hkv query heads that share the kv head form the stationary operand
q^T [D, g]. The context is walked in tiles of up to 128 tokens: each token's cache row (block id * block_size +
offset) is computed on chip from the block table and gathered by indirect DMA; K is transposed on the Tensor Engine,
scores [g, tokens] come from one matmul, positions at or past the context length are masked, and an online softmax
(running max, running sum, rescaled accumulator) folds each tile's P @ V into the output.
"""
from __future__ import annotations

from nki_kernels._nki import nisa, nki, nl

MASKED = -1.0e30


@nki.jit
def paged_decode_attention_kernel(q, k_cache, v_cache, block_tables, context_lens, scale):
    """q [B, Hq, D]; k_cache/v_cache [num_blocks, block_size, Hkv, D]; block_tables int32 [B, max_blocks];
    context_lens int32 [B] (each >= 1) -> [B, Hq, D].

    Table entries past a sequence's context are clamped into range and masked out, so padding may hold any
    integer; the blocks they name must hold finite values (a 0 * NaN would leak through P @ V).
    """
    batch, heads, dim = q.shape
    num_blocks, block_size, kv_heads, _ = k_cache.shape
    max_blocks = block_tables.shape[1]
    if heads % kv_heads:
        raise ValueError(f"paged_decode_attention: query heads {heads} must be a multiple of kv heads {kv_heads}")
    if dim > nl.tile_size.pmax:
        raise ValueError(f"paged_decode_attention: head_dim {dim} exceeds {nl.tile_size.pmax}")
    if block_size & (block_size - 1):
        raise ValueError(f"paged_decode_attention: block_size must be a power of two, got {block_size}")
    if tuple(v_cache.shape) != tuple(k_cache.shape):
        raise ValueError("paged_decode_attention: v_cache must have k_cache's shape")
    if block_tables.shape[0] != batch or tuple(context_lens.shape) != (batch,):
        raise ValueError("paged_decode_attention: block_tables and context_lens need one row per sequence")
    group = heads // kv_heads
    out = nl.ndarray((batch, heads, dim), dtype=q.dtype, buffer=nl.shared_hbm)

    max_context = max_blocks * block_size
    tile_tokens = min(nl.tile_size.pmax, max_context)
    num_tiles = (max_context + tile_tokens - 1) // tile_tokens
    block_shift = block_size.bit_length() - 1

    k_rows = k_cache.reshape((num_blocks * block_size, kv_heads * dim))
    v_rows = v_cache.reshape((num_blocks * block_size, kv_heads * dim))
    table_rows = block_tables.reshape((batch * max_blocks, 1))
    lens = context_lens.reshape((1, batch))
    i_tok = nl.arange(tile_tokens)[:, None]
    i_one_p, i_one_f = nl.arange(1)[:, None], nl.arange(1)[None, :]
    i_head = nl.arange(group)[:, None]
    i_dim = nl.arange(dim)[None, :]

    for b in nl.static_range(batch):
        length = nl.copy(nl.load(lens[i_one_p, b + i_one_f]), dtype=nl.float32).broadcast_to((group, 1))
        for h in nl.affine_range(kv_heads):
            q_t = nl.load_transpose2d(q[b, h * group + i_head, i_dim])  # [D, g]
            running_max = nl.full((group, 1), MASKED, dtype=nl.float32)
            running_sum = nl.zeros((group, 1), dtype=nl.float32)
            acc = nl.zeros((group, dim), dtype=nl.float32)

            for j in nl.sequential_range(num_tiles):
                position = nl.minimum(nisa.iota(j * tile_tokens + i_tok, dtype=nl.int32), max_context - 1)
                table_row = nl.add(nl.right_shift(position, block_shift), b * max_blocks)
                block = nl.load(table_rows[table_row[i_tok, 0], i_one_f])
                block = nl.minimum(nl.maximum(block, 0), num_blocks - 1)
                slot = nl.add(nl.multiply(block, block_size), nl.bitwise_and(position, block_size - 1))
                keys = nl.load(k_rows[slot[i_tok, 0], h * dim + i_dim])  # [tokens, D]
                values = nl.load(v_rows[slot[i_tok, 0], h * dim + i_dim])  # [tokens, D]

                scores = nl.multiply(nisa.nc_matmul(q_t, nl.copy(nisa.nc_transpose(keys))), scale, dtype=nl.float32)
                token_pos = nisa.iota(j * tile_tokens + nl.arange(tile_tokens)[None, :], dtype=nl.float32)
                past_end = nl.greater_equal(token_pos.broadcast_to((group, tile_tokens)), length, dtype=nl.float32)
                scores = nl.add(scores, nl.multiply(past_end, MASKED))

                new_max = nl.maximum(running_max, nl.max(scores, axis=[1], keepdims=True))
                probs = nisa.activation(op=nl.exp, data=scores, bias=nl.negative(new_max))
                rescale = nl.exp(nl.subtract(running_max, new_max))
                running_sum[...] = nl.add(nl.multiply(running_sum, rescale), nl.sum(probs, axis=[1], keepdims=True))
                probs_t = nl.copy(nisa.nc_transpose(nl.copy(probs, dtype=v_cache.dtype)))  # [tokens, g]
                acc[...] = nl.add(nl.multiply(acc, rescale), nisa.nc_matmul(probs_t, values))
                running_max[...] = new_max

            result = nl.multiply(acc, nl.reciprocal(running_sum), dtype=q.dtype)
            nl.store(out[b, h * group + i_head, i_dim], value=result)
    return out
