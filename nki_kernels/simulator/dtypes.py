"""Data types the simulator supports, as NumPy dtypes (bfloat16 from ml_dtypes)."""
from __future__ import annotations

import ml_dtypes
import numpy as np

float32 = np.dtype(np.float32)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
int32 = np.dtype(np.int32)
uint32 = np.dtype(np.uint32)

SUPPORTED = (float32, bfloat16, int32, uint32)


def check(dtype, what: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED:
        raise TypeError(f"{what}: dtype {dtype} is not supported by the simulator (float32, bfloat16, int32, uint32)")
    return dtype


def is_float(dtype: np.dtype) -> bool:
    return dtype in (float32, bfloat16)


def compute_view(data: np.ndarray) -> np.ndarray:
    """Engines compute in float32 (floats) or wide integers (ints)."""
    return data.astype(np.float32) if is_float(data.dtype) else data.astype(np.int64)


def promote(dtypes: list[np.dtype]) -> np.dtype:
    """Result type of an element-wise op when none is given: the widest input type, floats over ints."""
    floats = [d for d in dtypes if is_float(d)]
    if floats:
        return float32 if float32 in floats else bfloat16
    return int32 if int32 in dtypes or not dtypes else dtypes[0]


def poison(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Contents of memory nobody wrote: NaN for floats, a sentinel for integers."""
    if is_float(dtype):
        return np.full(shape, np.nan, dtype=dtype)
    return np.full(shape, -(2**30) if dtype == int32 else 2**30, dtype=dtype)
