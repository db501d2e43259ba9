"""Per-invocation accounting of live SBUF and PSUM allocations.

A tile is live while the kernel holds a Python reference to it (CPython frees it, and the simulator releases its
bytes, when the last reference goes). Each kernel invocation gets a fresh allocator; the peak figures are kept in
a MemoryReport for the caller.
"""
from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass

from nki_kernels.simulator import limits


@dataclass
class MemoryReport:
    peak_sbuf_bytes_per_partition: int = 0
    peak_psum_banks: int = 0
    sbuf_allocations: int = 0
    psum_allocations: int = 0


class Allocator:
    def __init__(self) -> None:
        self.sbuf_live = 0
        self.psum_banks_live = 0
        self.report = MemoryReport()

    def allocate(self, buffer: str, bytes_per_partition: int, describe: str) -> int:
        """Reserve space for one tile; returns the amount to hand back to release()."""
        if buffer == "sbuf":
            if self.sbuf_live + bytes_per_partition > limits.SBUF_BYTES_PER_PARTITION:
                raise limits.SbufOverflowError(
                    f"SBUF overflow: {describe} needs {bytes_per_partition} bytes per partition while "
                    f"{self.sbuf_live} are live; SBUF holds {limits.SBUF_BYTES_PER_PARTITION} bytes "
                    f"(192 KiB) per partition"
                )
            self.sbuf_live += bytes_per_partition
            self.report.sbuf_allocations += 1
            self.report.peak_sbuf_bytes_per_partition = max(self.report.peak_sbuf_bytes_per_partition, self.sbuf_live)
            return bytes_per_partition
        banks = max(1, math.ceil(bytes_per_partition / limits.PSUM_BANK_BYTES))
        if self.psum_banks_live + banks > limits.PSUM_BANKS:
            raise limits.PsumOverflowError(
                f"PSUM overflow: {describe} needs {banks} bank(s) while {self.psum_banks_live} are live; PSUM has "
                f"{limits.PSUM_BANKS} banks of {limits.PSUM_BANK_BYTES} bytes (16 KiB) per partition"
            )
        self.psum_banks_live += banks
        self.report.psum_allocations += 1
        self.report.peak_psum_banks = max(self.report.peak_psum_banks, self.psum_banks_live)
        return banks

    def release(self, buffer: str, amount: int) -> None:
        if buffer == "sbuf":
            self.sbuf_live -= amount
        else:
            self.psum_banks_live -= amount


_current: contextvars.ContextVar[Allocator | None] = contextvars.ContextVar("nki_sim_allocator", default=None)


def current_allocator() -> Allocator:
    allocator = _current.get()
    if allocator is None:
        raise RuntimeError("NKI simulator: on-chip tiles exist only inside a kernel run by simulate_kernel()")
    return allocator


def activate(allocator: Allocator) -> contextvars.Token:
    return _current.set(allocator)


def deactivate(token: contextvars.Token) -> None:
    _current.reset(token)
