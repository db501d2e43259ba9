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


# ---- stall-free batching: decodes first, prefill chunks fill the rest of the step's budget ----------------------


def _budgeted(step_budget: int, cap: int = 64, blocks: int = 400, seqs: int = 8, policy: str = "fcfs") -> Scheduler:
    return Scheduler(BlockManager(blocks, 4, True), seqs, cap, True, policy, step_token_budget=step_budget)


def test_a_decode_runs_every_step_while_a_long_prompt_prefills_across_several():
    s = _budgeted(step_budget=16, cap=64)
    a = Sequence("a", [1] * 5)
    s.add(a)
    _run_step(s)  # a prefilled: it decodes from now on
    long = Sequence("long", list(range(100)))
    s.add(long)
    chunks = []
    while long.in_prefill:
        out = _run_step(s)
        assert out.scheduled[0] == (a, 1), "the running decode is scheduled first, every step"
        assert out.num_batched_tokens <= 16
        chunks.append(dict(out.scheduled)[long])
    assert chunks == [15] * 6 + [10]
    assert len(a) == 5 + 1 + len(chunks)  # one token for a in every step the long prompt took


def test_a_step_with_nothing_to_decode_prefills_up_to_the_hard_cap():
    s = _budgeted(step_budget=16, cap=64)
    long = Sequence("long", list(range(100)))
    s.add(long)
    assert _run_step(s).scheduled == [(long, 64)]
    out = _run_step(s)
    assert out.scheduled == [(long, 36)]


def test_decodes_share_the_budget_so_prefill_chunks_shrink_as_more_sequences_decode():
    s = _budgeted(step_budget=16, cap=64)
    decoding = [Sequence(f"d{i}", [i + 1] * 3) for i in range(6)]
    for d in decoding:
        s.add(d)
    _run_step(s)
    s.add(Sequence("long", list(range(40))))
    out = _run_step(s)
    assert [n for _, n in out.scheduled] == [1] * 6 + [10]


def test_admissions_fill_only_what_the_decodes_leave():
    s = _budgeted(step_budget=16, cap=64)
    a = Sequence("a", [1] * 3)
    s.add(a)
    _run_step(s)
    b, c = Sequence("b", [2] * 8), Sequence("c", [3] * 8)
    s.add(b)
    s.add(c)
    out = _run_step(s)
    assert out.scheduled == [(a, 1), (b, 8), (c, 7)]


def test_a_budget_equal_to_the_cap_is_the_old_behaviour():
    s = _budgeted(step_budget=64, cap=64)
    a = Sequence("a", [1] * 3)
    s.add(a)
    _run_step(s)
    s.add(Sequence("long", list(range(100))))
    assert [n for _, n in _run_step(s).scheduled] == [1, 63]


def test_a_preempted_decode_gives_its_token_back_to_the_prefill_chunk():
    s = _budgeted(step_budget=8, cap=64, seqs=1, policy="priority")
    low = Sequence("low", [1] * 4, priority=5)
    s.add(low)
    _run_step(s)  # low decodes and holds the only sequence slot
    urgent = Sequence("urgent", [2] * 20, priority=0)
    s.add(urgent)
    out = _run_step(s)
    assert out.preempted == [low]
    assert out.scheduled == [(urgent, 8)]


def test_step_budget_outside_one_to_the_cap_is_rejected():
    with pytest.raises(ValueError, match="step_token_budget"):
        _budgeted(step_budget=65, cap=64)
    with pytest.raises(ValueError, match="step_token_budget"):
        _budgeted(step_budget=0, cap=64)
    with pytest.raises(ValueError, match="chunked prefill is off"):
        Scheduler(BlockManager(10, 4, True), 8, 64, False, "fcfs", step_token_budget=16)
