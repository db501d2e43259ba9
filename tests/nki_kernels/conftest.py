"""Helpers for the NKI kernel tests: random inputs, dtype handling, and the documented tolerances."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

# Kernel vs reference, per dtype (see nki_kernels/README.md). bfloat16 has an 8-bit mantissa (ulp 2^-8 relative);
# the kernels compute in float32 and round once, the references round where PyTorch's bfloat16 ops do.
TOLERANCES = {
    "float32": {"rms_norm": (1e-5, 1e-5), "rotary_embedding": (1e-5, 1e-5), "swiglu_mlp": (1e-4, 1e-4),
                "paged_decode_attention": (1e-5, 1e-5)},
    "bfloat16": {"rms_norm": (2e-2, 2e-2), "rotary_embedding": (3e-2, 2e-2), "swiglu_mlp": (3e-2, 3e-2),
                 "paged_decode_attention": (2e-2, 2e-2)},
}

NUMPY_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random(rng: np.random.Generator, shape, dtype: str, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(NUMPY_DTYPES[dtype])


def cast(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(values).astype(np.float32).astype(NUMPY_DTYPES[dtype])


def to_torch(array: np.ndarray) -> torch.Tensor:
    if array.dtype == NUMPY_DTYPES["bfloat16"]:
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).numpy()


def assert_matches(kernel_out: np.ndarray, reference_out: torch.Tensor, dtype: str, op: str) -> None:
    rtol, atol = TOLERANCES[dtype][op]
    assert kernel_out.dtype == NUMPY_DTYPES[dtype], f"kernel output dtype {kernel_out.dtype}, expected {dtype}"
    got = kernel_out.astype(np.float32)
    assert np.isfinite(got).all(), "kernel output has NaN/Inf (an element was never stored?)"
    np.testing.assert_allclose(got, to_numpy(reference_out), rtol=rtol, atol=atol)
