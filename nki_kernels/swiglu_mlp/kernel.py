"""SwiGLU MLP as an NKI kernel.

Per tile of 128 tokens: x is transposed on the Tensor Engine so the hidden size lies on the partitions; gate and up
are computed transposed (intermediate on the partitions, tokens free) accumulating over 128-wide hidden chunks in
PSUM; silu(gate) * up stays in SBUF as h^T, which is exactly the stationary operand the down projection needs, so
the output [tokens, 512-wide hidden chunk] accumulates over 128-wide intermediate chunks without another transpose.
Weights arrive in Hugging Face [out, in] layout and are transposed tile by tile on the Tensor Engine.
"""
from __future__ import annotations

from nki_kernels._nki import nisa, nki, nl


def _chunks(size: int, width: int) -> list[tuple[int, int]]:
    return [(start, min(width, size - start)) for start in range(0, size, width)]


def _load_transposed(w, row0: int, rows: int, col0: int, cols: int):
    """w[row0:row0+rows, col0:col0+cols] (rows, cols <= 128) -> SBUF tile [cols, rows]."""
    tile = nl.load(w[row0 + nl.arange(rows)[:, None], col0 + nl.arange(cols)[None, :]])
    return nl.copy(nisa.nc_transpose(tile))


def _load_down_transposed(w_down, out0: int, out_width: int, in0: int, in_width: int):
    """w_down[out0:out0+out_width, in0:in0+in_width] (out_width <= 512) -> SBUF tile [in_width, out_width]."""
    P = nl.tile_size.pmax
    tile = nl.ndarray((P, nl.tile_size.gemm_moving_fmax), dtype=w_down.dtype, buffer=nl.sbuf)
    for s0, width in _chunks(out_width, P):
        tile[0:in_width, s0:s0 + width] = _load_transposed(w_down, out0 + s0, width, in0, in_width)
    return tile[0:in_width, 0:out_width]


@nki.jit
def swiglu_mlp_kernel(x, w_gate, w_up, w_down):
    """x [T, H], w_gate/w_up [I, H], w_down [H, I] -> down(silu(x @ w_gate.T) * (x @ w_up.T)) [T, H]."""
    num_tokens, hidden = x.shape
    inter = w_gate.shape[0]
    shapes = (tuple(w_gate.shape), tuple(w_up.shape), tuple(w_down.shape))
    if shapes != ((inter, hidden), (inter, hidden), (hidden, inter)):
        raise ValueError(
            f"swiglu_mlp: need w_gate/w_up [I, H] and w_down [H, I] for H={hidden}; got w_gate {list(w_gate.shape)}, "
            f"w_up {list(w_up.shape)}, w_down {list(w_down.shape)}"
        )
    if not x.dtype == w_gate.dtype == w_up.dtype == w_down.dtype:
        raise ValueError("swiglu_mlp: x and the three weights must share one dtype")
    out = nl.ndarray((num_tokens, hidden), dtype=x.dtype, buffer=nl.shared_hbm)

    P = nl.tile_size.pmax
    hidden_chunks = _chunks(hidden, P)
    inter_chunks = _chunks(inter, P)
    out_chunks = _chunks(hidden, nl.tile_size.gemm_moving_fmax)
    i_p = nl.arange(P)[:, None]

    for t in nl.affine_range((num_tokens + P - 1) // P):
        rows = t * P + i_p
        valid = rows < num_tokens
        x_tile = nl.zeros((P, hidden), dtype=x.dtype)  # rows past T stay 0: a NaN would spread through the PE transpose
        x_tile[...] = nl.load(x[rows, nl.arange(hidden)[None, :]], mask=valid)
        x_t = nl.ndarray((P, len(hidden_chunks), P), dtype=x.dtype, buffer=nl.sbuf)
        for k, (h0, hw) in enumerate(hidden_chunks):
            x_t[0:hw, k, :] = nl.copy(nisa.nc_transpose(x_tile[:, h0:h0 + hw]))

        h_t = nl.ndarray((P, len(inter_chunks), P), dtype=x.dtype, buffer=nl.sbuf)
        for i, (i0, iw) in enumerate(inter_chunks):
            gate = nl.zeros((P, P), dtype=nl.float32, buffer=nl.psum)
            up = nl.zeros((P, P), dtype=nl.float32, buffer=nl.psum)
            for k, (h0, hw) in enumerate(hidden_chunks):
                gate[0:iw, :] += nisa.nc_matmul(_load_transposed(w_gate, i0, iw, h0, hw), x_t[0:hw, k, :])
                up[0:iw, :] += nisa.nc_matmul(_load_transposed(w_up, i0, iw, h0, hw), x_t[0:hw, k, :])
            h_t[0:iw, i, :] = nl.multiply(nl.silu(gate[0:iw, :]), up[0:iw, :], dtype=x.dtype)

        for o0, ow in out_chunks:
            acc = nl.zeros((P, nl.tile_size.gemm_moving_fmax), dtype=nl.float32, buffer=nl.psum)
            for i, (i0, iw) in enumerate(inter_chunks):
                acc[:, 0:ow] += nisa.nc_matmul(h_t[0:iw, i, :], _load_down_transposed(w_down, o0, ow, i0, iw))
            nl.store(out[rows, o0 + nl.arange(ow)[None, :]], value=nl.copy(acc[:, 0:ow], dtype=x.dtype), mask=valid)
    return out
