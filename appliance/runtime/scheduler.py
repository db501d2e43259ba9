"""Which sequences run in the next step, and how many of their tokens: plain Python over plain data, no torch.

Each step has a token budget (``max_num_batched_tokens``) and a sequence cap (``max_num_seqs``). Running sequences
are served first (decodes, then the next chunk of prompts still in prefill), then waiting ones are admitted while
budget, sequences and KV blocks last, so prefill and decode mix in one step. A prompt longer than the remaining
budget is prefilled in chunks (when chunked prefill is on). When a running sequence needs a block and none is free,
the lowest-ranked running sequence is preempted: its blocks are freed and it goes back to the waiting queue to be
recomputed (its prompt and completion so far, often largely from the prefix cache).

Rank: "fcfs" orders by arrival; "priority" by (priority, arrival), a lower priority value runs first, and a waiting
sequence that does not fit (blocks or sequence cap) preempts running sequences of a worse rank.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from appliance.runtime.block_manager import BlockManager
from appliance.runtime.sequence import Sequence, SequenceStatus


@dataclass
class SchedulerOutput:
    """The step's work: each scheduled sequence with the number of its tokens to compute now, in batch order."""

    scheduled: list[tuple[Sequence, int]] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    num_batched_tokens: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 2048,
        enable_chunked_prefill: bool = True,
        policy: str = "fcfs",
    ) -> None:
        if policy not in ("fcfs", "priority"):
            raise ValueError(f"scheduling_policy must be 'fcfs' or 'priority', got {policy!r}")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.enable_chunked_prefill = enable_chunked_prefill
        self.policy = policy
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def rank(self, seq: Sequence) -> tuple[int, int]:
        return (seq.priority, seq.arrival) if self.policy == "priority" else (0, seq.arrival)

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        bisect.insort(self.waiting, seq, key=self.rank)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        bm = self.block_manager
        budget = self.max_num_batched_tokens
        chosen: dict[Sequence, int] = {}
        out = SchedulerOutput()

        decodes = [s for s in self.running if not s.in_prefill]
        prefills = [s for s in self.running if s.in_prefill]
        for seq in decodes + prefills:
            if budget == 0:
                break
            if seq.status != SequenceStatus.RUNNING:
                continue  # preempted earlier in this step
            n = min(seq.num_uncomputed_tokens, budget)
            while not bm.can_append(seq, n):
                victim = self.running[-1]
                budget += chosen.pop(victim, 0)
                self._preempt(victim, out)
                if victim is seq:
                    break
            else:
                bm.may_append(seq, n)
                chosen[seq] = n
                budget -= n

        under_memory_pressure = bool(out.preempted)
        while self.waiting and budget > 0 and not under_memory_pressure:
            seq = self.waiting[0]
            hits = bm.match_prefix(seq)
            n = len(seq) - len(hits) * bm.block_size
            if n > budget:
                if not self.enable_chunked_prefill:
                    break
                n = budget
            if len(self.running) < self.max_num_seqs and bm.can_allocate(seq, hits, n):
                bm.allocate(seq, hits, n)
                self.waiting.pop(0)
                seq.status = SequenceStatus.RUNNING
                bisect.insort(self.running, seq, key=self.rank)
                chosen[seq] = n
                budget -= n
            elif self.policy == "priority" and self.running and self.rank(self.running[-1]) > self.rank(seq):
                victim = self.running[-1]
                budget += chosen.pop(victim, 0)
                self._preempt(victim, out)
            else:
                break

        out.scheduled = list(chosen.items())
        out.num_batched_tokens = self.max_num_batched_tokens - budget
        return out

    def postprocess(self, out: SchedulerOutput) -> None:
        """Record that the scheduled tokens were computed; newly full blocks become prefix-cache entries."""
        for seq, n in out.scheduled:
            seq.num_computed_tokens += n
            self.block_manager.register_computed_blocks(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Remove a sequence (finished or aborted) from the queues and free its blocks at once."""
        if seq.status == SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status == SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.deallocate(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.block_manager.deallocate(seq)
        seq.reset_for_recompute()
        self.num_preemptions += 1
        out.preempted.append(seq)
        bisect.insort(self.waiting, seq, key=self.rank)
