"""Linear layers packed once for oneDNN: same results as F.linear, plain weights recoverable, a clean fallback."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from appliance.runtime.model import linear
from appliance.runtime.model.linear import DenseLinear, PackedLinear, make_linear

needs_onednn = pytest.mark.skipif(not linear.packing_usable(torch.float32, "cpu"), reason="no oneDNN in this torch")


def _tensors(dtype: torch.dtype, bias: bool):
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(96, 64, generator=g) * 64**-0.5).to(dtype)
    x, other = torch.randn(7, 64, generator=g).to(dtype), torch.randn(7, 96, generator=g).to(dtype)
    b = torch.randn(96, generator=g).to(dtype) if bias else None
    return w, b, x, other


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_packed_float32_linear_and_its_fused_outputs_match_f_linear(bias):
    w, b, x, other = _tensors(torch.float32, bias)
    lin = make_linear(w, b)
    assert isinstance(lin, PackedLinear)
    with torch.inference_mode():
        y = F.linear(x, w, b)
        torch.testing.assert_close(lin(x), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.silu(x), F.silu(y), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.mul(x, other), y * other, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.add(x, other), other + y, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not linear.packing_usable(torch.bfloat16, "cpu"), reason="no oneDNN bfloat16 on this CPU")
def test_packed_bfloat16_gives_f_linears_bits():
    w, _, x, other = _tensors(torch.bfloat16, False)
    lin = make_linear(w)
    with torch.inference_mode():
        y = F.linear(x, w)
        assert torch.equal(lin(x), y)
        assert torch.equal(lin.mul(x, lin.silu(x)), y * F.silu(y))
        assert torch.equal(lin.add(x, other), other + y)


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_plain_weight_is_rebuilt_exactly_from_the_packed_one(dtype):
    if not linear.packing_usable(dtype, "cpu"):
        pytest.skip(f"no oneDNN {dtype} on this CPU")
    w, b, _, _ = _tensors(dtype, True)
    lin = make_linear(w, b)
    assert torch.equal(lin.weight, w) and lin.bias is b


def test_without_onednn_layers_fall_back_to_f_linear_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    monkeypatch.setattr(linear, "_usable", {})
    w, b, x, other = _tensors(torch.float32, True)
    with caplog.at_level(logging.WARNING, logger=linear.__name__):
        layers = [make_linear(w, b), make_linear(w)]
    assert all(isinstance(lin, DenseLinear) for lin in layers)
    assert [r.getMessage() for r in caplog.records] == [
        "linear layers: plain F.linear for float32 (oneDNN packed weights unavailable: torch was built without "
        "oneDNN (mkldnn))"]
    assert torch.equal(layers[0].add(x, other), other + F.linear(x, w, b))


def test_pack_false_and_non_cpu_devices_keep_plain_weights():
    w, _, _, _ = _tensors(torch.float32, False)
    assert isinstance(make_linear(w, pack=False), DenseLinear)
    assert not linear.packing_usable(torch.float32, "cuda")
