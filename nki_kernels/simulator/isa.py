"""nki.isa for the NumPy simulator: Tensor Engine matmul and transpose, iota, activation."""
from __future__ import annotations

import numpy as np

from nki_kernels.simulator import dtypes, limits
from nki_kernels.simulator.tensors import Tile


def _require_sbuf(tile: Tile, role: str, instruction: str) -> None:
    if not isinstance(tile, Tile):
        raise TypeError(f"{instruction}: {role} must be an on-chip tile")
    if tile.buffer != "sbuf":
        raise ValueError(f"{instruction} reads its {role} from SBUF; it is in {tile.buffer} (copy it with nl.copy)")


def nc_matmul(stationary: Tile, moving: Tile, *, mask=None) -> Tile:
    """stationary.T @ moving on the Tensor Engine.

    stationary [K<=128, M<=128], moving [K, N<=512] -> PSUM [M, N] float32.
    """
    _require_sbuf(stationary, "stationary operand", "nc_matmul")
    _require_sbuf(moving, "moving operand", "nc_matmul")
    if stationary.data.ndim != 2 or moving.data.ndim != 2:
        raise ValueError("nc_matmul takes 2-D tiles")
    (k, m), (k2, n) = stationary.shape, moving.shape
    if k != k2:
        raise ValueError(f"nc_matmul: contraction (partition) sizes differ: stationary {k}, moving {k2}")
    if stationary.dtype != moving.dtype:
        raise ValueError(
            f"nc_matmul: operands must share a dtype (stationary {stationary.dtype}, moving {moving.dtype})"
        )
    if k > limits.PMAX or m > limits.GEMM_STATIONARY_FMAX:
        raise limits.MatmulTileLimitError(
            f"nc_matmul stationary tile [{k}, {m}] exceeds the {limits.PMAX}x{limits.GEMM_STATIONARY_FMAX} "
            f"stationary limit (partition <= pmax, free <= gemm_stationary_fmax = {limits.GEMM_STATIONARY_FMAX})"
        )
    if n > limits.GEMM_MOVING_FMAX:
        raise limits.MatmulTileLimitError(
            f"nc_matmul moving tile [{k2}, {n}] exceeds the {limits.PMAX}x{limits.GEMM_MOVING_FMAX} moving limit "
            f"(free <= gemm_moving_fmax = {limits.GEMM_MOVING_FMAX})"
        )
    # einsum rather than BLAS: tiny multi-threaded BLAS calls crawl on a busy machine
    result = np.einsum("km,kn->mn", stationary.data.astype(np.float32), moving.data.astype(np.float32))
    return Tile(result.astype(np.float32), "psum", what="nc_matmul result")


def nc_transpose(data: Tile, *, mask=None) -> Tile:
    """Partition/free transpose on the Tensor Engine (a matmul against the identity).

    SBUF [P<=128, F<=128] -> PSUM [F, P].

    As on NeuronCore-v2 hardware, a NaN or Inf anywhere in the input spreads through the identity matmul.
    """
    _require_sbuf(data, "input", "nc_transpose")
    p, f = data.shape[0], int(np.prod(data.shape[1:]))
    if p > limits.PMAX or f > limits.GEMM_STATIONARY_FMAX:
        raise limits.MatmulTileLimitError(
            f"nc_transpose input [{p}, {f}] exceeds the Tensor Engine's "
            f"{limits.PMAX}x{limits.GEMM_STATIONARY_FMAX} limit"
        )
    flat = data.data.reshape(p, f).astype(np.float32)
    result = np.ascontiguousarray(flat.T)
    result[(~np.isfinite(flat)).any(axis=0), :] = np.nan
    return Tile(result.astype(data.dtype), "psum", what="nc_transpose result")


def iota(expr, dtype, *, mask=None) -> Tile:
    """Materialize an affine nl.arange expression as a tile on SBUF."""
    values = np.asarray(expr)
    if values.ndim < 2:
        raise ValueError("nisa.iota needs a 2-D (partition, free) expression")
    return Tile(np.ascontiguousarray(values.astype(dtypes.check(dtype, "nisa.iota"))), "sbuf", what="nisa.iota")


def activation(op, data: Tile, *, bias: Tile | None = None, scale: float = 1.0, dtype=None, mask=None) -> Tile:
    """op(data * scale + bias) on the Scalar Engine; bias is a per-partition [P, 1] vector."""
    values = data.data.astype(np.float32) * scale
    if bias is not None:
        if bias.shape != (data.shape[0], 1):
            raise ValueError(f"nisa.activation: bias must be [{data.shape[0]}, 1], got {list(bias.shape)}")
        values = values + bias.data.astype(np.float32)
    out_dtype = dtypes.check(dtype or data.dtype, "nisa.activation")
    return Tile(np.ascontiguousarray(op._np(values).astype(out_dtype)), "sbuf", what="nisa.activation")
