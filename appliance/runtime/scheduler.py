"""Which sequences run in the next step, and how many of their tokens: plain Python over plain data, no torch.

Each step has a hard token cap (``max_num_batched_tokens``, what the executor's shapes are sized for) and a sequence
cap (``max_num_seqs``). Stall-free batching (Sarathi-Serve; vLLM's chunked prefill with decode priority): every
running decode is scheduled first, then prefill chunks (running prompts first, then admissions while sequences and
KV blocks last) fill the rest of the step's token budget (``step_token_budget``), so a decode never waits behind a
long prompt: a step that decodes does at most ``step_token_budget`` tokens of work. A step with nothing to decode
prefills up to the hard cap (no one is waiting for a token). A prompt longer than what is left is prefilled in
chunks (when chunked prefill is on). When a running sequence needs a block and none is free,
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
        step_token_budget: int | None = None,
    ) -> None:
        if policy not in ("fcfs", "priority"):
            raise ValueError(f"scheduling_policy must be 'fcfs' or 'priority', got {policy!r}")
        budget = max_num_batched_tokens if step_token_budget is None else step_token_budget
        if not 1 <= budget <= max_num_batched_tokens:
            raise ValueError(f"step_token_budget must be between 1 and max_num_batched_tokens "
                             f"({max_num_batched_tokens}), got {budget}")
        if not enable_chunked_prefill and budget != max_num_batched_tokens:
            raise ValueError("step_token_budget must equal max_num_batched_tokens when chunked prefill is off "
                             "(a whole prompt must fit one step)")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.step_token_budget = budget
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
        chosen: dict[Sequence, int] = {}
        out = SchedulerOutput()
        decodes = [s for s in self.running if not s.in_prefill]
        prefills = [s for s in self.running if s.in_prefill]
        budget = self._schedule_running(decodes, self.max_num_batched_tokens, chosen, out)
        if chosen:  # someone waits for a token: prefill chunks get only the rest of the step's budget
            budget = min(budget, max(self.step_token_budget - sum(chosen.values()), 0))
        budget = self._schedule_running(prefills, budget, chosen, out)
        if not out.preempted:  # under memory pressure, admit no one
            self._admit(budget, chosen, out)
        out.scheduled = list(chosen.items())
        out.num_batched_tokens = sum(chosen.values())
        return out

    def _schedule_running(self, seqs: list[Sequence], budget: int, chosen: dict[Sequence, int],
                          out: SchedulerOutput) -> int:
        """Give each running sequence its next tokens (all of them, or a chunk of what budget is left), preempting
        the lowest-ranked running sequence when blocks run out; returns the budget left."""
        bm = self.block_manager
        for seq in seqs:
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
        return budget

    def _admit(self, budget: int, chosen: dict[Sequence, int], out: SchedulerOutput) -> None:
        """Admit waiting sequences in rank order while budget, the sequence cap and KV blocks last."""
        bm = self.block_manager
        while self.waiting and budget > 0:
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
