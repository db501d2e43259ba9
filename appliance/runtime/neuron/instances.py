"""Inferentia2 / Trainium1 instance inventory: chips, NeuronCores, device memory, valid tensor-parallel degrees.

Each NeuronCore-v2 has 16 GiB of device memory (HBM) on inf2 and trn1. The valid tensor-parallel degrees are the ones
the Neuron runtime supports, as listed in the NxD Inference API reference (tp_degree) of Neuron SDK 2.28.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
HBM_PER_CORE_BYTES = 16 * GIB
TP_DEGREES = {"inf2": (1, 2, 4, 8, 24), "trn1": (1, 2, 8, 16, 32)}


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str  # "inf2" | "trn1"
    chips: int
    cores: int

    @property
    def device_memory_bytes(self) -> int:
        return self.cores * HBM_PER_CORE_BYTES

    @property
    def hbm_per_core_bytes(self) -> int:
        return HBM_PER_CORE_BYTES

    @property
    def tp_degrees(self) -> tuple[int, ...]:
        return tuple(tp for tp in TP_DEGREES[self.family] if tp <= self.cores)


INSTANCES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        InstanceType("inf2.xlarge", "inf2", chips=1, cores=2),
        InstanceType("inf2.8xlarge", "inf2", chips=1, cores=2),
        InstanceType("inf2.24xlarge", "inf2", chips=6, cores=12),
        InstanceType("inf2.48xlarge", "inf2", chips=12, cores=24),
        InstanceType("trn1.2xlarge", "trn1", chips=1, cores=2),
        InstanceType("trn1.32xlarge", "trn1", chips=16, cores=32),
    )
}


def get_instance(name: str | InstanceType) -> InstanceType:
    """Look up an instance type by name, with an error listing the supported ones."""
    if isinstance(name, InstanceType):
        return name
    try:
        return INSTANCES[name]
    except KeyError:
        raise ValueError(f"instance type {name!r} is not supported; choose one of {', '.join(INSTANCES)}") from None
