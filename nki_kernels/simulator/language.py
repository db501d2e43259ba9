"""nki.language for the NumPy simulator: buffers, tile sizes, index helpers, load/store and element-wise math.

Only the subset the project's kernels use. Engines compute in float32; a result takes the dtype asked for, or the
widest input type.
"""
from __future__ import annotations

import numpy as np

from nki_kernels.simulator import dtypes, limits
from nki_kernels.simulator.loops import affine_range, sequential_range, static_range  # noqa: F401
from nki_kernels.simulator.tensors import HbmAccess, HbmTensor, Tile

float32 = dtypes.float32
bfloat16 = dtypes.bfloat16
int32 = dtypes.int32
uint32 = dtypes.uint32

sbuf = "sbuf"
psum = "psum"
hbm = "hbm"
shared_hbm = "shared_hbm"
private_hbm = "private_hbm"


class tile_size:
    pmax = limits.PMAX
    psum_fmax = limits.PSUM_FMAX
    gemm_stationary_fmax = limits.GEMM_STATIONARY_FMAX
    gemm_moving_fmax = limits.GEMM_MOVING_FMAX
    total_available_sbuf_size = limits.SBUF_BYTES_PER_PARTITION


def arange(*args) -> np.ndarray:
    return np.arange(*args, dtype=np.int64)


class _MGrid:
    def __getitem__(self, key) -> tuple[np.ndarray, ...]:
        return tuple(np.ogrid[key])


mgrid = _MGrid()


# ---- allocation -----------------------------------------------------------------------------------------------
def ndarray(shape, dtype, buffer: str = sbuf):
    shape = tuple(int(s) for s in shape)
    dtype = dtypes.check(dtype, "nl.ndarray")
    if buffer in (hbm, shared_hbm, private_hbm):
        return HbmTensor(dtypes.poison(shape, dtype))
    return Tile(dtypes.poison(shape, dtype), buffer, what="nl.ndarray")


def zeros(shape, dtype, buffer: str = sbuf) -> Tile:
    return Tile(np.zeros(tuple(shape), dtype=dtypes.check(dtype, "nl.zeros")), buffer, what="nl.zeros")


def full(shape, fill_value, dtype, buffer: str = sbuf) -> Tile:
    return Tile(np.full(tuple(shape), fill_value, dtype=dtypes.check(dtype, "nl.full")), buffer, what="nl.full")


# ---- data movement --------------------------------------------------------------------------------------------
def _access(src) -> HbmAccess:
    if isinstance(src, HbmTensor):
        return src[...]
    if isinstance(src, HbmAccess):
        return src
    raise TypeError("nl.load/nl.store move data between HBM tensors and on-chip tiles")


def _mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    return np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def load(src, *, mask=None, dtype=None) -> Tile:
    """Copy HBM -> SBUF. Under a mask, the masked-off elements are not read (they come back as NaN / a sentinel)."""
    access = _access(src)
    limits.check_partitions(access.shape, "nl.load")
    m = _mask(mask, access.shape)
    data = access.read(m)
    out_dtype = dtypes.check(dtype or access.dtype, "nl.load")
    data = data.astype(out_dtype)
    if m is not None:
        data = np.where(m, data, dtypes.poison(access.shape, out_dtype))
    tile = Tile(data.astype(out_dtype), sbuf, what="nl.load")
    tile.valid = m
    return tile


def load_transpose2d(src, *, mask=None, dtype=None) -> Tile:
    access = _access(src)
    if len(access.shape) != 2:
        raise ValueError("nl.load_transpose2d reads a 2-D region")
    limits.check_partitions(access.shape[::-1], "nl.load_transpose2d")
    data = access.read(None).T.astype(dtypes.check(dtype or access.dtype, "nl.load_transpose2d"))
    return Tile(np.ascontiguousarray(data), sbuf, what="nl.load_transpose2d")


def store(dst, value, *, mask=None) -> None:
    """Copy SBUF -> HBM. Under a mask only the selected elements are written."""
    access = _access(dst)
    if not isinstance(value, Tile):
        raise TypeError("nl.store writes an on-chip tile")
    if value.buffer != sbuf:
        raise ValueError("nl.store reads from SBUF; copy a PSUM tile to SBUF first (nl.copy)")
    if value.shape != access.shape:
        raise ValueError(f"nl.store: value shape {list(value.shape)} != destination shape {list(access.shape)}")
    access.write(value.data, _mask(mask, access.shape))


# ---- element-wise math ----------------------------------------------------------------------------------------
def _operands(*xs):
    arrays, types, partitions = [], [], set()
    for x in xs:
        if isinstance(x, Tile):
            arrays.append(dtypes.compute_view(x.data))
            types.append(x.dtype)
            partitions.add(x.shape[0])
        elif isinstance(x, (int, float, np.integer, np.floating)):
            arrays.append(x)
        else:
            raise TypeError(f"expected a tile or a scalar, got {type(x).__name__}")
    if len(partitions) > 1:
        raise ValueError(
            f"operands span different partition counts {sorted(partitions)}; "
            "broadcast along partitions with broadcast_to"
        )
    return arrays, types


def _result(values: np.ndarray, types, dtype, what: str) -> Tile:
    out_dtype = dtypes.check(dtype, what) if dtype is not None else dtypes.promote(types)
    if not dtypes.is_float(out_dtype):
        values = np.rint(values) if np.issubdtype(np.asarray(values).dtype, np.floating) else values
    return Tile(np.ascontiguousarray(np.asarray(values).astype(out_dtype)), sbuf, what=what)


def _binary(fn, name):
    def op(x, y, *, dtype=None, mask=None):
        (a, b), types = _operands(x, y)
        if mask is not None:
            raise NotImplementedError(f"simulator: nl.{name} with mask")
        return _result(fn(a, b), types, dtype, f"nl.{name}")

    op.__name__ = name
    op._np = fn
    return op


def _unary(fn, name):
    def op(x, *, dtype=None, mask=None):
        (a,), types = _operands(x)
        if mask is not None:
            raise NotImplementedError(f"simulator: nl.{name} with mask")
        return _result(fn(a), types, dtype, f"nl.{name}")

    op.__name__ = name
    op._np = fn
    return op


def _integer_only(fn, name):
    def checked(a, b):
        for v in (a, b):
            if np.issubdtype(np.asarray(v).dtype, np.floating):
                raise TypeError(f"nl.{name} takes integer operands")
        return fn(a, b)

    return checked


add = _binary(np.add, "add")
subtract = _binary(np.subtract, "subtract")
multiply = _binary(np.multiply, "multiply")
divide = _binary(np.divide, "divide")
maximum = _binary(np.maximum, "maximum")
minimum = _binary(np.minimum, "minimum")
less = _binary(np.less, "less")
greater_equal = _binary(np.greater_equal, "greater_equal")
right_shift = _binary(_integer_only(np.right_shift, "right_shift"), "right_shift")
bitwise_and = _binary(_integer_only(np.bitwise_and, "bitwise_and"), "bitwise_and")

exp = _unary(np.exp, "exp")
square = _unary(np.square, "square")
negative = _unary(np.negative, "negative")
rsqrt = _unary(lambda a: 1.0 / np.sqrt(a), "rsqrt")
reciprocal = _unary(lambda a: 1.0 / a, "reciprocal")
silu = _unary(lambda a: a / (1.0 + np.exp(-a)), "silu")
copy = _unary(lambda a: np.array(a), "copy")


def _reduce(fn, name):
    def op(x, axis, *, dtype=None, keepdims=False, mask=None):
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        if 0 in axes:
            raise ValueError(f"nl.{name}: reductions run along free axes; axis 0 is the partition axis")
        (a,), types = _operands(x)
        return _result(fn(a, axis=axes, keepdims=keepdims), types, dtype, f"nl.{name}")

    op.__name__ = name
    return op


sum = _reduce(np.sum, "sum")  # noqa: A001 - the NKI name
max = _reduce(np.max, "max")  # noqa: A001 - the NKI name
