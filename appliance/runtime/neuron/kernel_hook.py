"""Route the engine's kernel dispatch layer to the NKI kernels when running on Neuron with kernels enabled.

`appliance.runtime.kernels` is the one dispatch layer the model code calls (rms_norm, rotary_embedding, swiglu_mlp,
paged_decode_attention). Each `nki_kernels.<op>` exposes `kernel` (an `nki.jit` kernel) with the same signature as
its PyTorch `reference`; with the Neuron SDK installed, `nki.jit` kernels are called directly with torch tensors on
the Neuron (XLA) device. On any other device the references stay in place: the NumPy simulator runs kernels on NumPy
arrays for tests, not inside the model. Not run on Neuron hardware.
"""
from __future__ import annotations

from collections.abc import Callable

from appliance.runtime import kernels


def nki_kernel_table() -> dict[str, Callable]:
    """{operation: nki_kernels.<operation>.kernel} for every operation the dispatch layer has."""
    import nki_kernels

    missing = [op for op in kernels.OPERATIONS if op not in nki_kernels.OPERATIONS]
    if missing:
        raise RuntimeError(f"nki_kernels has no kernel for {', '.join(missing)}")
    return {op: getattr(nki_kernels, op).kernel for op in kernels.OPERATIONS}


def install_neuron_kernels(enabled: bool, on_neuron_device: bool) -> list[str]:
    """Install the NKI kernels into the dispatch layer when `enabled` (the compile option) and running on a Neuron
    device; otherwise make sure the references are in place. Returns the operations now routed to NKI."""
    if not (enabled and on_neuron_device):
        kernels.use_implementations(None)
        return []
    table = nki_kernel_table()
    kernels.use_implementations(table)
    return sorted(table)
