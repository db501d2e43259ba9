"""KV memory: sequences pack into a fixed budget with at most one partly-filled block each; nothing leaks."""
from __future__ import annotations

import random

from appliance.runtime import SamplingParams
from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore


def test_running_sequences_fill_a_fixed_kv_budget_within_one_block_each(checkpoint_factory):
    block_size, blocks = 4, 60
    engine = EngineCore(
        EngineConfig(str(checkpoint_factory("llama")), block_size=block_size, num_kv_blocks=blocks,
                     enable_prefix_caching=False)
    )
    prompt_len, max_tokens = 10, 14
    for i in range(24):
        engine.add_request(str(i), [5 + i] * prompt_len, SamplingParams(max_tokens=max_tokens, temperature=0.0,
                                                                          ignore_eos=True))
    peak = 0
    reserve_whole_lifetime = blocks // -(-(prompt_len + max_tokens) // block_size)
    while engine.has_unfinished_requests():
        unfinished = len(engine.requests)
        engine.step()
        running = engine.scheduler.running
        tokens_held = sum(s.num_computed_tokens for s in running)
        used = engine.stats().kv_blocks_used
        assert used <= blocks
        assert used * block_size - tokens_held < max(1, len(running)) * block_size + len(running)
        if unfinished >= reserve_whole_lifetime:
            # Never fewer in a step than if every sequence had reserved its whole lifetime up front.
            assert engine.stats().last_step_num_seqs >= reserve_whole_lifetime
        peak = max(peak, engine.stats().last_step_num_seqs)
    ideal = blocks * block_size // (prompt_len + max_tokens)
    assert peak >= ideal
    assert engine.stats().kv_blocks_used == 0


def test_no_blocks_leak_after_a_thousand_requests_with_random_aborts(checkpoint_factory):
    engine = EngineCore(
        EngineConfig(str(checkpoint_factory("llama")), block_size=4, num_kv_blocks=80, max_num_seqs=32,
                     max_num_batched_tokens=64)
    )
    rng = random.Random(0)
    submitted, aborted, finished = 0, 0, 0
    live: set[str] = set()
    while submitted < 1000 or engine.has_unfinished_requests():
        for _ in range(min(rng.randint(0, 12), 1000 - submitted)):
            rid = f"r{submitted}"
            prompt = [rng.randrange(4, 500) for _ in range(rng.randint(1, 20))]
            if rng.random() < 0.3:
                prompt = [7, 8, 9, 10, 11, 12, 13, 14] + prompt  # shared prefix: cached blocks get reused
            params = SamplingParams(max_tokens=rng.randint(1, 4), n=rng.choice([1, 1, 1, 2]),
                                    temperature=rng.choice([0.0, 1.0]), ignore_eos=True)
            engine.add_request(rid, prompt, params)
            live.add(rid)
            submitted += 1
        for out in engine.step():
            if out.finished:
                live.discard(out.request_id)
                finished += 1
        for rid in list(live):
            if rng.random() < 0.08:
                engine.abort_request(rid)
                live.discard(rid)
                aborted += 1
    stats = engine.stats()
    assert submitted == 1000 and aborted > 50 and finished > 500
    assert aborted + finished == 1000
    assert stats.kv_blocks_used == 0 and stats.num_running == 0 and stats.num_waiting == 0
    assert all(b.ref_count == 0 for b in engine.block_manager.blocks)
    assert engine.block_manager.num_free_blocks == 80
    assert not engine.requests
    assert stats.prefix_cache_hit_tokens > 0
