"""Static-shape bucketing: pick the smallest compiled bucket, pad up to it, and cut the padding off again.

A Neuron artifact is compiled for a fixed set of shapes: batch sizes, context-encoding (prefill) lengths and
token-generation lengths (how long the KV context may be). Every step is padded up to the smallest bucket that holds
it. Plain Python, no torch: the same code decides shapes for the Neuron executor and for the bucketed CPU mode.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class BucketOverflow(ValueError):
    """A batch or length is larger than the largest compiled bucket."""


def power_of_two_buckets(maximum: int, minimum: int = 1) -> tuple[int, ...]:
    """Powers of two from `minimum` (rounded up to one) up to `maximum`; `maximum` itself is always the last bucket."""
    if maximum < 1:
        raise ValueError(f"maximum must be >= 1, got {maximum}")
    if minimum < 1:
        raise ValueError(f"minimum must be >= 1, got {minimum}")
    out = []
    b = 1
    while b < minimum:
        b *= 2
    while b < maximum:
        out.append(b)
        b *= 2
    out.append(maximum)
    return tuple(out)


def normalize_buckets(name: str, buckets: Sequence[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated positive integers; ValueError naming `name` otherwise."""
    if not buckets:
        raise ValueError(f"{name} must list at least one bucket")
    for b in buckets:
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
            raise ValueError(f"{name} must be positive integers, got {b!r}")
    return tuple(sorted(set(buckets)))


def choose_bucket(buckets: Sequence[int], value: int, what: str = "value") -> int:
    """The smallest bucket >= value (buckets sorted ascending)."""
    for b in buckets:
        if b >= value:
            return b
    raise BucketOverflow(f"{what} {value} exceeds the largest compiled bucket {buckets[-1]}")


def pad_row(row: Sequence[T], length: int, pad: T) -> list[T]:
    if len(row) > length:
        raise BucketOverflow(f"row of length {len(row)} does not fit bucket {length}")
    return list(row) + [pad] * (length - len(row))


def pad_rows(rows: Sequence[Sequence[T]], batch: int, length: int, pad: T) -> list[list[T]]:
    """Pad each row to `length` and the batch to `batch` rows of padding."""
    if len(rows) > batch:
        raise BucketOverflow(f"batch of {len(rows)} does not fit bucket {batch}")
    out = [pad_row(r, length, pad) for r in rows]
    out.extend([[pad] * length for _ in range(batch - len(rows))])
    return out


@dataclass(frozen=True)
class Padded:
    """What was padded: `rows` real rows of `lengths` real tokens inside a (batch, length) bucket."""

    batch: int
    length: int
    lengths: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def unpad_rows(self, values: Any) -> Any:
        """Drop the padding rows (works on lists and tensors: anything sliceable on its first axis)."""
        return values[: self.rows]

    def last_positions(self) -> list[int]:
        """Index of each real row's last real token inside the padded length (right padding)."""
        return [n - 1 for n in self.lengths]


@dataclass(frozen=True)
class BucketSet:
    """The buckets an artifact was compiled for."""

    batch_sizes: tuple[int, ...]
    context_lengths: tuple[int, ...]  # prefill: how many tokens one call encodes
    token_lengths: tuple[int, ...]  # decode: how long the KV context may be

    @classmethod
    def build(
        cls, batch_sizes: Sequence[int], context_lengths: Sequence[int], token_lengths: Sequence[int]
    ) -> "BucketSet":
        return cls(
            normalize_buckets("batch_sizes", batch_sizes),
            normalize_buckets("context_buckets", context_lengths),
            normalize_buckets("token_buckets", token_lengths),
        )

    @classmethod
    def powers_of_two(cls, max_batch: int, max_context: int, max_model_len: int, min_length: int = 16) -> "BucketSet":
        return cls(
            power_of_two_buckets(max_batch),
            power_of_two_buckets(max_context, min(min_length, max_context)),
            power_of_two_buckets(max_model_len, min(min_length, max_model_len)),
        )

    def batch_bucket(self, n: int) -> int:
        return choose_bucket(self.batch_sizes, n, "batch size")

    def prefill(self, lengths: Sequence[int]) -> Padded:
        """Shape of a prefill call over rows of `lengths` tokens."""
        return Padded(
            self.batch_bucket(len(lengths)),
            choose_bucket(self.context_lengths, max(lengths), "prompt length"),
            tuple(lengths),
        )

    def decode(self, n: int, max_context_len: int) -> Padded:
        """Shape of a decode call: `n` rows of one token each, attending to at most `max_context_len` positions."""
        return Padded(
            self.batch_bucket(n), choose_bucket(self.token_lengths, max_context_len, "context length"), (1,) * n
        )
