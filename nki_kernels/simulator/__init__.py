"""The project's NumPy implementation of the NKI subset its kernels use, enforcing NeuronCore-v2 limits.

It is not the Neuron SDK's simulator: it checks shapes, buffers, tile limits and on-chip memory use and computes the
math in NumPy (float32 engines, bfloat16 rounding via ml_dtypes); it does not model timing or instruction scheduling.
"""
from nki_kernels.simulator import isa, language, nki
from nki_kernels.simulator.limits import (
    HardwareLimitError,
    MatmulTileLimitError,
    PartitionLimitError,
    PsumOverflowError,
    SbufOverflowError,
)

__all__ = [
    "nki",
    "language",
    "isa",
    "HardwareLimitError",
    "PartitionLimitError",
    "MatmulTileLimitError",
    "SbufOverflowError",
    "PsumOverflowError",
]
