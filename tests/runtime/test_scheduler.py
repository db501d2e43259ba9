"""Scheduler over plain data: token budget, sequence cap, chunked prefill, preemption, policies."""
from __future__ import annotations

import pytest

from appliance.runtime.block_manager import BlockManager
from appliance.runtime.scheduler import Scheduler
from appliance.runtime.sequence import Sequence


def _sched(blocks=100, block_size=4, seqs=8, tokens=32, chunked=True, policy="fcfs", prefix=True) -> Scheduler:
    return Scheduler(BlockManager(blocks, block_size, prefix), seqs, tokens, chunked, policy)


def _run_step(s: Scheduler, next_token: int = 7):
    """One step as the engine does it: schedule, mark computed, append a token to caught-up sequences."""
    out = s.schedule()
    s.postprocess(out)
    for seq, _ in out.scheduled:
        if seq.num_computed_tokens == len(seq):
            seq.append_token(next_token)
    return out


def test_prefill_and_decode_mix_in_one_step_within_the_budget():
    s = _sched(tokens=16)
    a = Sequence("a", [1] * 10)
    s.add(a)
    assert _run_step(s).scheduled == [(a, 10)]
    b = Sequence("b", [2] * 12)
    s.add(b)
    out = _run_step(s)
    assert out.scheduled == [(a, 1), (b, 12)]
    assert out.num_batched_tokens == 13


def test_long_prompt_is_prefilled_in_chunks():
    s = _sched(tokens=8)
    a = Sequence("a", list(range(20)))
    s.add(a)
    assert [n for _, n in _run_step(s).scheduled] == [8]
    assert [n for _, n in _run_step(s).scheduled] == [8]
    assert [n for _, n in _run_step(s).scheduled] == [4]
    assert len(a) == 21  # a token was sampled once the whole prompt was in


def test_without_chunked_prefill_a_prompt_waits_for_a_budget_that_fits_it():
    s = _sched(tokens=16, chunked=False)
    a, b = Sequence("a", [1] * 10), Sequence("b", [2] * 10)
    s.add(a)
    s.add(b)
    assert [x.request_id for x, _ in s.schedule().scheduled] == ["a"]


def test_sequence_cap_limits_running():
    s = _sched(seqs=2)
    for i in range(4):
        s.add(Sequence(str(i), [i] * 3))
    out = _run_step(s)
    assert len(out.scheduled) == 2 and len(s.waiting) == 2


def test_preemption_frees_the_latest_sequence_when_blocks_run_out():
    s = _sched(blocks=4, block_size=4)
    a, b = Sequence("a", [1] * 8), Sequence("b", [2] * 8)
    s.add(a)
    s.add(b)
    _run_step(s)  # both prefilled: 4 blocks used, each has 9 tokens and needs a third block next step
    out = _run_step(s)
    assert out.preempted == [b] and s.num_preemptions == 1
    assert out.scheduled == [(a, 1)]
    assert b in s.waiting and b.num_computed_tokens == 0 and b.block_table == []
    assert s.block_manager.num_used_blocks == 3


def test_preempted_sequence_is_recomputed_with_its_generated_tokens():
    s = _sched(blocks=4, block_size=4, prefix=False)
    a, b = Sequence("a", [1] * 8, max_tokens=2), Sequence("b", [2] * 8)
    s.add(a)
    s.add(b)
    _run_step(s)
    _run_step(s)  # b preempted, holding 9 tokens (prompt + 1 generated)
    s.finish(a, "length")
    out = _run_step(s)
    assert out.scheduled == [(b, 9)]


def test_priority_policy_admits_lower_priority_values_first():
    s = _sched(seqs=1, policy="priority")
    low, high = Sequence("low", [1] * 3, priority=5), Sequence("high", [2] * 3, priority=0)
    s.add(low)
    s.add(high)
    assert s.schedule().scheduled[0][0] is high


def test_fcfs_policy_ignores_priority():
    s = _sched(seqs=1, policy="fcfs")
    first, second = Sequence("first", [1] * 3, priority=5), Sequence("second", [2] * 3, priority=0)
    s.add(first)
    s.add(second)
    assert s.schedule().scheduled[0][0] is first


def test_finish_frees_blocks_at_once():
    s = _sched()
    a = Sequence("a", [1] * 9)
    s.add(a)
    _run_step(s)
    assert s.block_manager.num_used_blocks == 3
    s.finish(a, "abort")
    assert s.block_manager.num_used_blocks == 0 and not s.has_unfinished()


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="scheduling_policy"):
        _sched(policy="random")


def test_priority_policy_preempts_worse_ranked_running_sequences_for_a_better_one():
    s = _sched(blocks=4, block_size=4, policy="priority")
    low = Sequence("low", [1] * 12, priority=5)
    s.add(low)
    _run_step(s)
    urgent = Sequence("urgent", [2] * 6, priority=0)
    s.add(urgent)
    out = _run_step(s)
    assert out.preempted == [low] and (urgent, 6) in out.scheduled
    assert low in s.waiting


def test_fcfs_policy_never_preempts_for_a_newcomer():
    s = _sched(blocks=4, block_size=4, policy="fcfs")
    first = Sequence("first", [1] * 12, priority=5)
    s.add(first)
    _run_step(s)
    s.add(Sequence("second", [2] * 6, priority=0))
    out = _run_step(s)
    assert out.preempted == [] and out.scheduled == [(first, 1)]
