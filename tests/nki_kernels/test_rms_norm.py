import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

import nki_kernels
from nki_kernels import rms_norm, simulate
from tests.nki_kernels.conftest import assert_matches, random, to_torch

SHAPES = [(1, 64), (130, 200), (257, 4100)]  # one token; a partial 128-row tile; two hidden chunks (> 2048)


@pytest.mark.simulator
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_reference(rng, shape, dtype):
    x = random(rng, shape, dtype)
    weight = random(rng, shape[1:], dtype, scale=0.5) + np.asarray(1.0, dtype=x.dtype)
    out = simulate(rms_norm.kernel, x, weight, eps=1e-5)
    assert_matches(out, rms_norm.reference(to_torch(x), to_torch(weight), 1e-5), dtype, "rms_norm")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_equals_transformers_llama_rms_norm(dtype):
    torch.manual_seed(0)
    x = torch.randn(7, 96, dtype=dtype)
    layer = LlamaRMSNorm(96, eps=1e-6).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(96))
        expected = layer(x)
    torch.testing.assert_close(rms_norm.reference(x, layer.weight.detach(), 1e-6), expected, rtol=0, atol=0)


def test_operation_exposes_kernel_and_reference():
    assert nki_kernels.rms_norm.kernel is rms_norm.rms_norm_kernel
    assert nki_kernels.rms_norm.reference is rms_norm.rms_norm


@pytest.mark.simulator
def test_kernel_rejects_mismatched_weight(rng):
    with pytest.raises(ValueError, match="weight must be"):
        simulate(rms_norm.kernel, random(rng, (4, 32), "float32"), random(rng, (16,), "float32"), eps=1e-6)


def test_reference_rejects_mismatched_weight():
    with pytest.raises(ValueError, match="weight"):
        rms_norm.reference(torch.ones(4, 32), torch.ones(16), 1e-6)
