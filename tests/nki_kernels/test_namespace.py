"""Which NKI namespace the kernels get: the Neuron SDK 2.28's legacy `neuronxcc.nki` (the Beta 1 language the kernels
are written in) when importable, the project's simulator otherwise; the Beta 2 top-level `nki` package alone is not
used (see nki_kernels/_nki.py for the sources behind this choice)."""
import importlib
import importlib.machinery
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
    assert nki_kernels.NEURON_SDK is False and _nki.NAMESPACE == "simulator"


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
        assert reloaded.NEURON_SDK is True and reloaded.NAMESPACE == "neuronxcc.nki"
        assert reloaded.NEXT_NKI_ONLY is False
        assert reloaded.nl is fake_nki.language and reloaded.nisa is fake_nki.isa
        monkeypatch.setattr(nki_kernels, "nki", reloaded.nki)
        x = np.ones((2, 2), dtype=np.float32)
        assert nki_kernels.simulate("kernel", x, eps=1.0) == "sdk-result"
        assert calls == [("kernel", (x,), {"eps": 1.0})]
    finally:
        monkeypatch.undo()
        importlib.reload(_nki)


def _fake_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attrs)
    return module


def test_the_beta2_nki_package_alone_is_not_used_for_the_beta1_kernels(monkeypatch):
    # TEST DOUBLE: a top-level `nki` package as SDK 2.29+ ships it, with no neuronxcc.nki beside it.
    beta2 = _fake_module("nki", language=_fake_module("nki.language"), isa=_fake_module("nki.isa"))
    monkeypatch.setitem(sys.modules, "nki", beta2)
    monkeypatch.setitem(sys.modules, "neuronxcc", None)  # `import neuronxcc` raises ImportError
    try:
        reloaded = importlib.reload(_nki)
        assert reloaded.NEURON_SDK is False and reloaded.NAMESPACE == "simulator"
        assert reloaded.nl is simulator.language and reloaded.nki is simulator.nki
        assert reloaded.NEXT_NKI_ONLY is True
    finally:
        monkeypatch.undo()
        importlib.reload(_nki)


def test_with_both_namespaces_installed_the_kernels_get_neuronxcc_nki(monkeypatch):
    # TEST DOUBLE: SDK 2.28 ships both `neuronxcc.nki` (Beta 1) and `nki` (Beta 2).
    legacy = _fake_module("neuronxcc.nki", language=_fake_module("neuronxcc.nki.language"),
                          isa=_fake_module("neuronxcc.nki.isa"))
    monkeypatch.setitem(sys.modules, "neuronxcc", _fake_module("neuronxcc", nki=legacy))
    monkeypatch.setitem(sys.modules, "neuronxcc.nki", legacy)
    monkeypatch.setitem(sys.modules, "neuronxcc.nki.language", legacy.language)
    monkeypatch.setitem(sys.modules, "neuronxcc.nki.isa", legacy.isa)
    monkeypatch.setitem(sys.modules, "nki", _fake_module("nki"))
    try:
        reloaded = importlib.reload(_nki)
        assert reloaded.nki is legacy and reloaded.nl is legacy.language
        assert reloaded.NAMESPACE == "neuronxcc.nki" and reloaded.NEXT_NKI_ONLY is False
    finally:
        monkeypatch.undo()
        importlib.reload(_nki)
