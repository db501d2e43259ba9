"""NKI kernels for the appliance's hot operations, each beside a PyTorch reference with the same signature.

    from nki_kernels import rms_norm, simulate
    out = simulate(rms_norm.kernel, x, weight, eps=1e-6)      # NumPy in, NumPy out
    ref = rms_norm.reference(torch_x, torch_weight, 1e-6)     # torch in, torch out

`simulate` runs the Neuron SDK's `nki.simulate_kernel` when neuronxcc is installed, and otherwise the project's own
NumPy simulator (nki_kernels/simulator), which enforces the NeuronCore-v2 tile and memory limits.
"""
from __future__ import annotations

from nki_kernels._nki import NEURON_SDK, nki


def simulate(kernel, *arrays, **kwargs):
    """Run an NKI kernel on NumPy arrays and return its outputs as NumPy arrays."""
    return nki.simulate_kernel(kernel, *arrays, **kwargs)


from nki_kernels import paged_decode_attention, rms_norm, rotary_embedding, swiglu_mlp  # noqa: E402

OPERATIONS = ("rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention")

__all__ = [
    "simulate", "NEURON_SDK", "OPERATIONS", "rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention"
]
