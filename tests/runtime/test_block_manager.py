"""BlockManager over plain data: allocation, ref counts, prefix caching, tenant salts."""
from __future__ import annotations

from appliance.runtime.block_manager import BlockManager
from appliance.runtime.sequence import Sequence


def _seq(tokens: list[int], salt: str | None = None) -> Sequence:
    return Sequence("r", tokens, cache_salt=salt)


def _compute_all(bm: BlockManager, seq: Sequence) -> None:
    seq.num_computed_tokens = len(seq)
    bm.register_computed_blocks(seq)


def test_allocate_takes_blocks_for_the_tokens_and_deallocate_returns_them():
    bm = BlockManager(num_blocks=10, block_size=4)
    seq = _seq(list(range(10)))
    assert bm.can_allocate(seq, [], 10)
    bm.allocate(seq, [], 10)
    assert len(seq.block_table) == 3 and bm.num_used_blocks == 3
    bm.deallocate(seq)
    assert bm.num_used_blocks == 0 and seq.block_table == []


def test_can_allocate_refuses_when_blocks_run_out():
    bm = BlockManager(num_blocks=2, block_size=4)
    assert not bm.can_allocate(_seq(list(range(9))), [], 9)
    assert bm.can_allocate(_seq(list(range(8))), [], 8)


def test_append_takes_a_new_block_only_when_the_last_is_full():
    bm = BlockManager(num_blocks=4, block_size=4)
    seq = _seq([1, 2, 3])
    bm.allocate(seq, [], 3)
    seq.num_computed_tokens = 3
    seq.append_token(4)
    bm.may_append(seq, 1)
    assert len(seq.block_table) == 1
    seq.num_computed_tokens = 4
    seq.append_token(5)
    assert bm.can_append(seq, 1)
    bm.may_append(seq, 1)
    assert len(seq.block_table) == 2


def test_prefix_cache_shares_full_blocks_and_counts_references():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = _seq(list(range(10)))
    bm.allocate(a, bm.match_prefix(a), 10)
    _compute_all(bm, a)
    b = _seq(list(range(8)) + [99, 98, 97])
    hits = bm.match_prefix(b)
    assert hits == a.block_table[:2]
    bm.allocate(b, hits, len(b) - 8)
    assert b.num_computed_tokens == 8 and b.block_table[:2] == a.block_table[:2]
    assert bm.blocks[a.block_table[0]].ref_count == 2
    assert bm.prefix_hit_tokens == 8
    bm.deallocate(a)
    assert bm.blocks[b.block_table[0]].ref_count == 1
    bm.deallocate(b)
    assert bm.num_used_blocks == 0


def test_prefix_cache_never_shares_between_salts():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = _seq(list(range(10)), salt="tenant-a")
    bm.allocate(a, [], 10)
    _compute_all(bm, a)
    assert bm.match_prefix(_seq(list(range(10)), salt="tenant-b")) == []
    assert len(bm.match_prefix(_seq(list(range(10)), salt="tenant-a"))) == 2


def test_prefix_match_leaves_the_last_token_to_compute():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = _seq(list(range(8)))
    bm.allocate(a, [], 8)
    _compute_all(bm, a)
    assert len(bm.match_prefix(_seq(list(range(8))))) == 1


def test_blocks_are_not_cached_before_their_tokens_are_computed():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = _seq(list(range(12)))
    bm.allocate(a, [], 12)
    a.num_computed_tokens = 4
    bm.register_computed_blocks(a)
    assert len(bm.match_prefix(_seq(list(range(12))))) == 1


def test_freed_cached_blocks_are_reused_by_a_hit_and_evicted_when_needed():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = _seq(list(range(9)))
    bm.allocate(a, [], 9)
    _compute_all(bm, a)
    bm.deallocate(a)
    again = _seq(list(range(9)))
    hits = bm.match_prefix(again)
    assert len(hits) == 2 and bm.can_allocate(again, hits, 1)
    other = _seq([50 + i for i in range(12)])
    assert bm.can_allocate(other, [], 12)
    bm.allocate(other, [], 12)
    assert bm.match_prefix(_seq(list(range(9)))) == []
