"""Inferentia2 / Trainium1 instances: chips, NeuronCores, device and host memory, valid tensor-parallel degrees.

Each NeuronCore-v2 has 16 GiB of device memory (HBM) on inf2 and trn1. The valid tensor-parallel degrees are the ones
the Neuron runtime supports, as listed in the NxD Inference API reference (tp_degree) of Neuron SDK 2.28.

vCPUs and host memory (the instance's RAM, which loading and sharding a checkpoint needs) are AWS's published figures:
the "Inf2 Architecture" and "Trn1/Trn1n Architecture" tables of the Neuron documentation (awsdocs-neuron, general/arch/
neuron-hardware/inf2-arch and trn1-arch; "Host Memory (GiB)"), which match the EC2 Inf2 and Trn1 instance-type pages.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
HBM_PER_CORE_BYTES = 16 * GIB
# Host memory kept for the OS and the appliance's other processes on the node (PostgreSQL, Redis, web, Celery, agent):
# an allowance, not a measurement.
HOST_RESERVED_BYTES = 2 * GIB
TP_DEGREES = {"inf2": (1, 2, 4, 8, 24), "trn1": (1, 2, 8, 16, 32)}


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str  # "inf2" | "trn1"
    chips: int
    cores: int
    vcpus: int
    host_memory_gib: int  # the instance's RAM as AWS lists it

    @property
    def device_memory_bytes(self) -> int:
        return self.cores * HBM_PER_CORE_BYTES

    @property
    def host_memory_bytes(self) -> int:
        return self.host_memory_gib * GIB

    @property
    def usable_host_memory_bytes(self) -> int:
        """Host memory a compile or a load may use: the instance's RAM less HOST_RESERVED_BYTES."""
        return self.host_memory_bytes - HOST_RESERVED_BYTES

    @property
    def hbm_per_core_bytes(self) -> int:
        return HBM_PER_CORE_BYTES

    @property
    def tp_degrees(self) -> tuple[int, ...]:
        return tuple(tp for tp in TP_DEGREES[self.family] if tp <= self.cores)


INSTANCES: dict[str, InstanceType] = {
    i.name: i
    for i in (
        InstanceType("inf2.xlarge", "inf2", chips=1, cores=2, vcpus=4, host_memory_gib=16),
        InstanceType("inf2.8xlarge", "inf2", chips=1, cores=2, vcpus=32, host_memory_gib=128),
        InstanceType("inf2.24xlarge", "inf2", chips=6, cores=12, vcpus=96, host_memory_gib=384),
        InstanceType("inf2.48xlarge", "inf2", chips=12, cores=24, vcpus=192, host_memory_gib=768),
        InstanceType("trn1.2xlarge", "trn1", chips=1, cores=2, vcpus=8, host_memory_gib=32),
        InstanceType("trn1.32xlarge", "trn1", chips=16, cores=32, vcpus=128, host_memory_gib=512),
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


def smallest_with_host_memory(need_bytes: int, family: str = "inf2", min_cores: int = 1) -> InstanceType | None:
    """The smallest instance of `family` with at least `min_cores` cores whose usable host memory holds `need_bytes`."""
    fitting = [i for i in INSTANCES.values()
               if i.family == family and i.cores >= min_cores and i.usable_host_memory_bytes >= need_bytes]
    return min(fitting, key=lambda i: (i.host_memory_gib, i.cores), default=None)
