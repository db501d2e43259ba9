"""Paged KV-cache blocks: allocation, reference counts, and prefix caching of full blocks.

A full block is identified by a hash chain over the token ids it and every block before it hold, salted per tenant
(``Sequence.cache_salt``) so tenants never share cached blocks. A block's hash is registered only once its K/V has
been computed, so a chunked prefill in flight is never served to another sequence. Freed blocks keep their contents
and hash until they are reused (least recently freed first), which is what makes later hits possible.
"""
from __future__ import annotations

from collections import OrderedDict

from appliance.runtime.sequence import Sequence


def block_hash(prev_hash: int | None, token_ids: tuple[int, ...], salt: str | None) -> int:
    return hash((prev_hash, salt, token_ids))


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        self.token_ids: tuple[int, ...] = ()


class BlockManager:
    """Owns ``num_blocks`` blocks of ``block_size`` token slots each; plain Python, no torch."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.prefix_queried_tokens = 0
        self.prefix_hit_tokens = 0

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self.free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def match_prefix(self, seq: Sequence) -> list[int]:
        """Cached blocks holding the sequence's leading full blocks (never its last token, which must be computed)."""
        if not self.enable_prefix_caching or seq.needs_prompt_logits:
            return []
        hits: list[int] = []
        prev = None
        bs = self.block_size
        for i in range((len(seq) - 1) // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = block_hash(prev, tokens, seq.cache_salt)
            block_id = self.hash_to_block.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
            prev = h
        return hits

    def can_allocate(self, seq: Sequence, hits: list[int], num_new_tokens: int) -> bool:
        """Whether the sequence can start with ``hits`` from the cache plus ``num_new_tokens`` computed now."""
        needed = self.blocks_for(len(hits) * self.block_size + num_new_tokens) - len(hits)
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return needed + revived <= len(self.free)

    def allocate(self, seq: Sequence, hits: list[int], num_new_tokens: int) -> None:
        assert not seq.block_table, "sequence already holds blocks"
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
            seq.block_hashes.append(block.hash)
        seq.num_computed_tokens = seq.num_cached_tokens = len(hits) * self.block_size
        self.prefix_queried_tokens += len(seq)
        self.prefix_hit_tokens += seq.num_cached_tokens
        self.may_append(seq, num_new_tokens)

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether there are free blocks for the sequence's next ``num_new_tokens`` tokens."""
        needed = self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return needed <= len(self.free)

    def may_append(self, seq: Sequence, num_new_tokens: int) -> None:
        """Give the sequence the blocks its next ``num_new_tokens`` tokens need (none if its last block has room)."""
        needed = self.blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(needed):
            seq.block_table.append(self._take_free_block())

    def deallocate(self, seq: Sequence) -> None:
        """Release the sequence's blocks; blocks nobody else references become free (their cache entry kept)."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.block_hashes = []

    def register_computed_blocks(self, seq: Sequence) -> None:
        """Make the sequence's newly computed full blocks findable by later prefix matches."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        full = min(seq.num_computed_tokens, len(seq)) // bs
        for i in range(len(seq.block_hashes), full):
            prev = seq.block_hashes[-1] if seq.block_hashes else None
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = block_hash(prev, tokens, seq.cache_salt)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            if block.hash is None and h not in self.hash_to_block:
                block.hash = h
                block.token_ids = tokens
                self.hash_to_block[h] = block.block_id

    def _take_free_block(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:
            if self.hash_to_block.get(block.hash) == block_id:
                del self.hash_to_block[block.hash]
            block.hash = None
            block.token_ids = ()
        block.ref_count = 1
        return block_id
