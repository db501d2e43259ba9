"""The CPU extension's float32 linear for few rows (csrc/linear.cpp) against F.linear, and how PackedLinear uses it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from appliance.runtime import cpu_extension
from appliance.runtime.model import linear
from appliance.runtime.model.linear import PackedLinear

NONE, ADD, MUL = 0, 1, 2


@pytest.fixture(scope="module")
def panel(ext):
    if not ext.panel_linear_available():
        pytest.skip("panel_linear needs AVX-512")
    return ext


def _case(rows: int, out: int, inp: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * inp**-0.5
    return w, torch.randn(out, generator=g), torch.randn(rows, inp, generator=g), torch.randn(rows, out, generator=g)


# out: panels of 32 and partial last panels; in: whole K in registers, one 128-block, blocks with a tail;
# rows: one tile (<= 14), two and three balanced tiles, past SMALL_M_MAX
@pytest.mark.parametrize("out,inp", [(32, 16), (40, 17), (96, 128), (33, 300), (576, 1536)])
@pytest.mark.parametrize("rows", [1, 5, 14, 15, 29, 64, 100])
def test_every_mode_matches_f_linear(panel, out, inp, rows):
    w, b, x, other = _case(rows, out, inp)
    packed = panel.pack_panel_weight(w)
    assert packed.shape == ((out + 31) // 32, inp, 32)
    y = F.linear(x, w, b)
    torch.testing.assert_close(panel.panel_linear(x, packed, out, b), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(panel.panel_linear(x, packed, out), F.linear(x, w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(panel.panel_linear(x, packed, out, b, other, ADD), y + other, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(panel.panel_linear(x, packed, out, b, other, MUL), y * other, rtol=1e-5, atol=1e-5)


def test_a_rows_result_does_not_depend_on_the_rest_of_the_batch(panel):
    """One FMA chain over k in order per output: a row alone (one tile, all of K in registers) and the same row in a
    batch of 40 (three tiles, K in 128-blocks through the buffer) give the same bits, and so do other threads."""
    w, b, x, _ = _case(40, 72, 300, seed=3)
    packed = panel.pack_panel_weight(w)
    batch = panel.panel_linear(x, packed, 72, b)
    for i in (0, 13, 14, 27, 39):
        assert torch.equal(panel.panel_linear(x[i : i + 1], packed, 72, b)[0], batch[i])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(panel.panel_linear(x, packed, 72, b), batch)
    finally:
        torch.set_num_threads(threads)


def test_non_contiguous_inputs_and_empty_batches(panel):
    w, b, x, other = _case(9, 48, 40)
    packed = panel.pack_panel_weight(w)
    xt = torch.randn(40, 9).t()  # [9, 40], not contiguous
    torch.testing.assert_close(panel.panel_linear(xt, packed, 48, b), F.linear(xt, w, b), rtol=1e-5, atol=1e-5)
    assert panel.panel_linear(x[:0], packed, 48, b).shape == (0, 48)


@pytest.mark.parametrize("call,message", [
    (lambda f, w, x, o: f(x.double(), w, 48), "float32"),
    (lambda f, w, x, o: f(x[:, :30], w, 48), "features"),
    (lambda f, w, x, o: f(x, w, 80), "does not match"),
    (lambda f, w, x, o: f(x, w, 48, None, o, 3), "mode"),
    (lambda f, w, x, o: f(x, w, 48, None, None, ADD), "other is needed"),
    (lambda f, w, x, o: f(x, w, 48, None, o[:, :40], MUL), "other must be"),
    (lambda f, w, x, o: f(x, w, 48, torch.zeros(47)), "bias"),
])
def test_bad_arguments_raise_instead_of_reading_out_of_bounds(panel, call, message):
    w, _, x, other = _case(9, 48, 40)
    with pytest.raises(RuntimeError, match=message):
        call(panel.panel_linear, panel.pack_panel_weight(w), x, other)


def test_packed_linear_uses_panels_up_to_small_m_max_rows_and_onednn_above(panel, monkeypatch):
    if not linear.packing_usable(torch.float32, "cpu"):
        pytest.skip("no oneDNN in this torch")
    w, b, _, _ = _case(1, 96, 64)
    lin = PackedLinear(w, b)
    assert lin.panels is not None
    calls = []
    monkeypatch.setattr(lin, "_ext", type("Spy", (), {"panel_linear": lambda self, *a: calls.append(a[0].shape[0])
                                                      or panel.panel_linear(*a)})())
    for rows in (1, linear.SMALL_M_MAX, linear.SMALL_M_MAX + 1):
        _, _, x, other = _case(rows, 96, 64, seed=rows)
        y = F.linear(x, w, b)
        torch.testing.assert_close(lin(x), y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.silu(x), F.silu(y), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.mul(x, other), y * other, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lin.add(x, other), other + y, rtol=1e-5, atol=1e-5)
    assert calls == [1] * 4 + [linear.SMALL_M_MAX] * 4


def test_without_the_extension_packed_layers_hold_no_panels(monkeypatch):
    if not linear.packing_usable(torch.float32, "cpu"):
        pytest.skip("no oneDNN in this torch")
    monkeypatch.setenv(cpu_extension.ENV_CHOICE, "torch")
    cpu_extension.reset()
    try:
        w, b, x, _ = _case(3, 40, 24)
        lin = PackedLinear(w, b)
        assert lin.panels is None
        torch.testing.assert_close(lin(x), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    finally:
        cpu_extension.reset()
