"""RMSNorm as an NKI kernel: 128 tokens per tile on the partitions, the hidden size along the free axis."""
from __future__ import annotations

from nki_kernels._nki import nki, nl

HIDDEN_CHUNK = 2048  # hidden elements per SBUF tile; larger H is processed in two passes over chunks


@nki.jit
def rms_norm_kernel(x, weight, eps):
    """x [T, H], weight [H] -> x / sqrt(mean(x^2) + eps) * weight, computed in float32, stored in x's dtype."""
    num_tokens, hidden = x.shape
    if tuple(weight.shape) != (hidden,):
        raise ValueError(f"rms_norm: weight must be [{hidden}], got {list(weight.shape)}")
    out = nl.ndarray((num_tokens, hidden), dtype=x.dtype, buffer=nl.shared_hbm)

    P = nl.tile_size.pmax
    chunks = [(c0, min(HIDDEN_CHUNK, hidden - c0)) for c0 in range(0, hidden, HIDDEN_CHUNK)]
    i_p = nl.arange(P)[:, None]
    weight_rows = weight.reshape((1, hidden))
    resident = len(chunks) == 1

    if resident:
        w_tile = nl.load(weight_rows[nl.arange(1)[:, None], nl.arange(hidden)[None, :]], dtype=nl.float32)
        w_tile = w_tile.broadcast_to((P, hidden))

    for t in nl.affine_range((num_tokens + P - 1) // P):
        rows = t * P + i_p
        valid = rows < num_tokens

        sum_sq = nl.zeros((P, 1), dtype=nl.float32)
        for c0, width in chunks:
            x_tile = nl.load(x[rows, c0 + nl.arange(width)[None, :]], mask=valid, dtype=nl.float32)
            sum_sq[...] = nl.add(sum_sq, nl.sum(nl.square(x_tile), axis=[1], keepdims=True))
        inv_rms = nl.rsqrt(nl.add(nl.multiply(sum_sq, 1.0 / hidden), eps))

        for c0, width in chunks:
            i_f = c0 + nl.arange(width)[None, :]
            if not resident:
                x_tile = nl.load(x[rows, i_f], mask=valid, dtype=nl.float32)
                w_tile = nl.load(weight_rows[nl.arange(1)[:, None], i_f], dtype=nl.float32).broadcast_to((P, width))
            y = nl.multiply(nl.multiply(x_tile, inv_rms), w_tile, dtype=x.dtype)
            nl.store(out[rows, i_f], value=y, mask=valid)
    return out
