"""The `nki` namespace of the simulator: @jit and simulate_kernel."""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from nki_kernels.simulator import isa, language  # noqa: F401 - nki.language / nki.isa, as in neuronxcc.nki
from nki_kernels.simulator.memory import Allocator, MemoryReport, activate, deactivate
from nki_kernels.simulator.tensors import HbmTensor

last_memory_report: MemoryReport | None = None


class Kernel:
    """What @nki.jit returns here: the traced function, runnable only through simulate_kernel."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"{self.func.__name__}: no NeuronCore here; run NKI kernels with nki_kernels.simulate(kernel, *arrays)"
        )


def jit(func: Callable[..., Any] | None = None, **options):
    if func is None:
        return lambda f: Kernel(f)
    return Kernel(func)


def _to_numpy(result):
    if isinstance(result, HbmTensor):
        return np.array(result.array)
    if isinstance(result, (tuple, list)):
        return tuple(_to_numpy(r) for r in result)
    raise TypeError("a kernel returns HBM tensors (nl.ndarray(..., buffer=nl.shared_hbm))")


def simulate_kernel(kernel, *args, **kwargs):
    """Run a kernel on NumPy arrays and return its outputs as NumPy arrays.

    The peak on-chip memory of the run is left in last_memory_report.
    """
    global last_memory_report
    func = kernel.func if isinstance(kernel, Kernel) else kernel
    wrapped = [HbmTensor(np.array(a, copy=True, order="C")) if isinstance(a, np.ndarray) else a for a in args]
    allocator = Allocator()
    token = activate(allocator)
    try:
        result = func(*wrapped, **kwargs)
    finally:
        deactivate(token)
        last_memory_report = allocator.report
    return _to_numpy(result)
