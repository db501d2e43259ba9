"""The references here and the engine's dispatch layer (appliance/runtime/kernels.py) are the same functions."""
import numpy as np
import pytest
import torch

from nki_kernels import paged_decode_attention, rms_norm, rotary_embedding, swiglu_mlp
from tests.nki_kernels.conftest import to_torch
from tests.nki_kernels.test_paged_decode_attention import _paged_inputs

dispatch = pytest.importorskip("appliance.runtime.kernels")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_references_are_bit_identical_to_the_engine_dispatch_layer(dtype):
    torch.manual_seed(0)
    x, w = torch.randn(6, 64, dtype=dtype), torch.randn(64, dtype=dtype)
    assert torch.equal(rms_norm.reference(x, w, 1e-6), dispatch.rms_norm(x, w, 1e-6))

    q, k = torch.randn(6, 8, 32, dtype=dtype), torch.randn(6, 2, 32, dtype=dtype)
    cos, sin = torch.randn(6, 32, dtype=dtype), torch.randn(6, 32, dtype=dtype)
    for ours, theirs in zip(rotary_embedding.reference(q, k, cos, sin), dispatch.rotary_embedding(q, k, cos, sin)):
        assert torch.equal(ours, theirs)

    wg, wu, wd = torch.randn(96, 64, dtype=dtype), torch.randn(96, 64, dtype=dtype), torch.randn(64, 96, dtype=dtype)
    assert torch.equal(swiglu_mlp.reference(x, wg, wu, wd), dispatch.swiglu_mlp(x, wg, wu, wd))

    name = "float32" if dtype == torch.float32 else "bfloat16"
    inputs = _paged_inputs(np.random.default_rng(3), 16, 4, 32, 16, [1, 40, 77], name)
    tensors = [to_torch(a) for a in inputs]
    assert torch.equal(
        paged_decode_attention.reference(*tensors, 0.125), dispatch.paged_decode_attention(*tensors, 0.125)
    )
