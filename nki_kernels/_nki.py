"""The one place that imports the NKI namespace: the Neuron SDK's when installed, else the project's simulator."""
from __future__ import annotations

try:
    import neuronxcc.nki as nki
    import neuronxcc.nki.isa as nisa
    import neuronxcc.nki.language as nl

    NEURON_SDK = True
except ImportError:
    from nki_kernels.simulator import isa as nisa
    from nki_kernels.simulator import language as nl
    from nki_kernels.simulator import nki

    NEURON_SDK = False

__all__ = ["nki", "nl", "nisa", "NEURON_SDK"]
