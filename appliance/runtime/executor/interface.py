"""The executor contract: what one engine step asks of the device.

The engine's scheduler decides, for each sequence in the step, which of its tokens to run; the engine describes
that as a ``StepBatch`` of plain Python lists (no tensors, no device), and the executor returns the logits of the
sequences that need a next token. Everything device-specific (tensor placement, the paged KV cache tensors, kernel
choice, static-shape padding) lives behind this interface:

- ``TorchExecutor`` (CPU, CUDA) runs ragged batches as they come.
- A bucketed executor (Neuron, or Torch for testing) pads a StepBatch to compiled static shapes (batch size,
  tokens per sequence, blocks per sequence) and slices its result back; padding rows must write no real cache slot
  (point them at a scratch block) and must not appear in the returned logits.

KV cache: per layer a K and a V tensor shaped [num_blocks, block_size, num_kv_heads, head_dim]. Token ``p`` of a
sequence lives in block ``block_table[p // block_size]`` at offset ``p % block_size``. The executor owns the cache;
the engine's block manager owns which blocks belong to whom.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepBatch:
    """One step's work, one entry per scheduled sequence (in any order; the executor may reorder internally).

    token_ids[i]: the tokens of sequence i to run now (a prefill chunk, or the one token of a decode).
    start_positions[i]: the position of token_ids[i][0]; the tokens occupy positions start .. start+len-1, and the
        cache already holds the sequence's tokens at positions 0 .. start-1.
    block_tables[i]: the sequence's KV blocks, covering at least positions 0 .. start+len-1.
    context_lens[i]: start + len(token_ids[i]), the tokens in the cache once this step has written its K/V.
    needs_logits[i]: whether the sequence gets a next-token distribution from this step (its last prompt chunk, or a
        decode); a prefill chunk that is not the last needs none.
    all_logits[i]: the sequence wants the logits of every token it runs now (prompt logprobs), not just the last;
        only for executors with ``supports_prompt_logprobs``. Empty means False for all.
    """

    token_ids: list[list[int]] = field(default_factory=list)
    start_positions: list[int] = field(default_factory=list)
    block_tables: list[list[int]] = field(default_factory=list)
    context_lens: list[int] = field(default_factory=list)
    needs_logits: list[bool] = field(default_factory=list)
    all_logits: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.token_ids)

    def add(self, token_ids: list[int], start: int, block_table: list[int], needs_logits: bool,
            all_logits: bool = False) -> None:
        self.token_ids.append(token_ids)
        self.start_positions.append(start)
        self.block_tables.append(block_table)
        self.context_lens.append(start + len(token_ids))
        self.needs_logits.append(needs_logits)
        self.all_logits.append(all_logits)

    def wants_all_logits(self, i: int) -> bool:
        return i < len(self.all_logits) and self.all_logits[i]

    def logit_rows(self, i: int) -> int:
        """How many rows of the returned logits belong to sequence i."""
        if self.wants_all_logits(i):
            return len(self.token_ids[i])
        return 1 if self.needs_logits[i] else 0


class Executor(ABC):
    """Owns the model weights and KV cache on one device and runs steps."""

    device: str
    num_kv_blocks: int
    block_size: int
    vocab_size: int
    last_forward_s: float = 0.0  # seconds the last execute() spent in the model itself (input preparation excluded)
    supports_prompt_logprobs: bool = False  # honours StepBatch.all_logits (compiled graphs return last rows only)

    @abstractmethod
    def execute(self, batch: StepBatch) -> Any:
        """Run one step: write every scheduled token's K/V into the cache and return float32 logits
        [k, vocab_size] as a torch tensor on ``self.device``, one row per sequence with needs_logits, in batch
        order (k may be 0); a sequence with all_logits has a row per token it ran instead (``batch.logit_rows``).
        Sets ``last_forward_s``."""

    @abstractmethod
    def kv_cache_bytes_per_block(self) -> int:
        """Bytes one block takes across all layers (K and V), for sizing the cache from a memory budget."""
