"""The engine's dispatch layer (appliance/runtime/kernels.py) against the references beside the NKI kernels."""
import numpy as np
import pytest
import torch

from nki_kernels import paged_decode_attention, rms_norm, rotary_embedding, swiglu_mlp
from tests.nki_kernels.conftest import to_torch
from tests.nki_kernels.test_paged_decode_attention import _paged_inputs

dispatch = pytest.importorskip("appliance.runtime.kernels")


def test_the_engine_uses_the_references_for_norm_rotary_and_mlp():
    assert dispatch.REFERENCES["rms_norm"] is rms_norm.reference
    assert dispatch.REFERENCES["rotary_embedding"] is rotary_embedding.reference
    assert dispatch.REFERENCES["swiglu_mlp"] is swiglu_mlp.reference


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_engine_paged_attention_agrees_with_the_reference(dtype, atol):
    """The engine's SDPA form and the NKI reference's einsum form, on tables padded with a valid block (as the
    engine pads them)."""
    name = "float32" if dtype == torch.float32 else "bfloat16"
    inputs = _paged_inputs(np.random.default_rng(3), 16, 4, 32, 16, [1, 40, 77], name, padding=0)
    tensors = [to_torch(a) for a in inputs]
    ours = paged_decode_attention.reference(*tensors, 0.125).float()
    engine = dispatch.paged_decode_attention(*tensors, 0.125).float()
    assert ours.shape == engine.shape
    assert (ours - engine).abs().max().item() <= atol
