"""Which NKI namespace the kernels get: the Neuron SDK's when importable, the project's simulator otherwise."""
import importlib
import sys
import types

import numpy as np
import pytest

import nki_kernels
from nki_kernels import _nki, simulator


def test_without_the_neuron_sdk_the_simulator_namespace_is_used():
    if _nki.NEURON_SDK:
        pytest.skip("neuronxcc is installed here")
    assert _nki.nl is simulator.language and _nki.nisa is simulator.isa and _nki.nki is simulator.nki
    assert nki_kernels.NEURON_SDK is False


def test_every_operation_exposes_kernel_and_reference():
    for name in nki_kernels.OPERATIONS:
        op = getattr(nki_kernels, name)
        assert callable(op.reference) and op.kernel.__name__ == f"{name}_kernel"


def test_with_a_neuron_sdk_installed_its_namespace_is_used(monkeypatch):
    # TEST DOUBLE: stand-in modules named like the Neuron SDK's, to check the import switch only.
    fake_nki = types.ModuleType("neuronxcc.nki")
    fake_nki.language = types.ModuleType("neuronxcc.nki.language")
    fake_nki.isa = types.ModuleType("neuronxcc.nki.isa")
    calls = []
    fake_nki.simulate_kernel = lambda kernel, *args, **kwargs: calls.append((kernel, args, kwargs)) or "sdk-result"
    fake_root = types.ModuleType("neuronxcc")
    fake_root.nki = fake_nki
    monkeypatch.setitem(sys.modules, "neuronxcc", fake_root)
    monkeypatch.setitem(sys.modules, "neuronxcc.nki", fake_nki)
    monkeypatch.setitem(sys.modules, "neuronxcc.nki.language", fake_nki.language)
    monkeypatch.setitem(sys.modules, "neuronxcc.nki.isa", fake_nki.isa)
    try:
        reloaded = importlib.reload(_nki)
        assert reloaded.NEURON_SDK is True
        assert reloaded.nl is fake_nki.language and reloaded.nisa is fake_nki.isa
        monkeypatch.setattr(nki_kernels, "nki", reloaded.nki)
        x = np.ones((2, 2), dtype=np.float32)
        assert nki_kernels.simulate("kernel", x, eps=1.0) == "sdk-result"
        assert calls == [("kernel", (x,), {"eps": 1.0})]
    finally:
        monkeypatch.undo()
        importlib.reload(_nki)
