"""Rotary position embedding as an NKI kernel: 128 tokens per tile on the partitions, heads x head_dim free."""
from __future__ import annotations

from nki_kernels._nki import nki, nl


def _rotate_heads(x, out, rows, valid, cos_tile, sin_tile):
    num_tokens, heads, dim = x.shape
    half = dim // 2
    P = nl.tile_size.pmax
    x_rows = x.reshape((num_tokens, heads * dim))
    out_rows = out.reshape((num_tokens, heads * dim))
    i_f = nl.arange(heads * dim)[None, :]

    x_tile = nl.load(x_rows[rows, i_f], mask=valid, dtype=nl.float32)
    rotated = nl.ndarray((P, heads * dim), dtype=x.dtype, buffer=nl.sbuf)
    cos_lo, cos_hi = cos_tile[:, 0:half], cos_tile[:, half:dim]
    sin_lo, sin_hi = sin_tile[:, 0:half], sin_tile[:, half:dim]
    for h in nl.static_range(heads):
        lo = x_tile[:, h * dim:h * dim + half]
        hi = x_tile[:, h * dim + half:(h + 1) * dim]
        rotated[:, h * dim:h * dim + half] = nl.subtract(nl.multiply(lo, cos_lo), nl.multiply(hi, sin_lo))
        rotated[:, h * dim + half:(h + 1) * dim] = nl.add(nl.multiply(hi, cos_hi), nl.multiply(lo, sin_hi))
    nl.store(out_rows[rows, i_f], value=rotated, mask=valid)


@nki.jit
def rotary_embedding_kernel(q, k, cos, sin):
    """q [T, Hq, D], k [T, Hkv, D], cos/sin [T, D] -> (q, k) with x * cos + rotate_half(x) * sin (float32 math)."""
    num_tokens, _, dim = q.shape
    if k.shape[0] != num_tokens or k.shape[2] != dim or tuple(cos.shape) != (num_tokens, dim) or cos.shape != sin.shape:
        raise ValueError(
            f"rotary_embedding: need q [T, Hq, D], k [T, Hkv, D], cos/sin [T, D]; got q {list(q.shape)}, "
            f"k {list(k.shape)}, cos {list(cos.shape)}, sin {list(sin.shape)}"
        )
    if dim % 2:
        raise ValueError(f"rotary_embedding: head_dim must be even, got {dim}")
    q_out = nl.ndarray(q.shape, dtype=q.dtype, buffer=nl.shared_hbm)
    k_out = nl.ndarray(k.shape, dtype=k.dtype, buffer=nl.shared_hbm)

    P = nl.tile_size.pmax
    i_p = nl.arange(P)[:, None]
    i_d = nl.arange(dim)[None, :]
    for t in nl.affine_range((num_tokens + P - 1) // P):
        rows = t * P + i_p
        valid = rows < num_tokens
        cos_tile = nl.load(cos[rows, i_d], mask=valid, dtype=nl.float32)
        sin_tile = nl.load(sin[rows, i_d], mask=valid, dtype=nl.float32)
        _rotate_heads(q, q_out, rows, valid, cos_tile, sin_tile)
        _rotate_heads(k, k_out, rows, valid, cos_tile, sin_tile)
    return q_out, k_out
