"""NeuronCore-v2 (Inf2 / Trn1) hardware limits the simulator enforces, and the errors it raises."""
from __future__ import annotations

PMAX = 128  # partitions in SBUF and PSUM (nl.tile_size.pmax)
GEMM_STATIONARY_FMAX = 128  # free size of the stationary matmul operand
GEMM_MOVING_FMAX = 512  # free size of the moving matmul operand
PSUM_FMAX = 512  # float32 elements in one PSUM bank per partition
SBUF_BYTES_PER_PARTITION = 192 * 1024
PSUM_BYTES_PER_PARTITION = 16 * 1024
PSUM_BANK_BYTES = 2 * 1024
PSUM_BANKS = PSUM_BYTES_PER_PARTITION // PSUM_BANK_BYTES


class HardwareLimitError(ValueError):
    """A kernel asked for something a NeuronCore cannot do; the message names the limit."""


class PartitionLimitError(HardwareLimitError):
    pass


class MatmulTileLimitError(HardwareLimitError):
    pass


class SbufOverflowError(HardwareLimitError):
    pass


class PsumOverflowError(HardwareLimitError):
    pass


def check_partitions(shape: tuple[int, ...], what: str) -> None:
    if len(shape) < 2:
        raise ValueError(
            f"{what}: an on-chip tile needs at least 2 dimensions (partition, free), got shape {list(shape)}"
        )
    if shape[0] > PMAX:
        raise PartitionLimitError(
            f"{what}: partition dimension {shape[0]} exceeds the {PMAX}-partition limit (nl.tile_size.pmax = {PMAX})"
        )
