"""EMULATOR (test double): NxD Inference 0.8's bucket generation (``modules/autobucketing.py``) and bucket selection
(``models/model_wrapper.py``), with the SDK's errors and its first-fit rules.

Prefix caching uses 2-D buckets ``[active tokens, prefix tokens]``; the context-encoding prefix list always starts
with 0. Selection is strict for 1-D sequence buckets (``required_len < bucket``, the largest accepted when equal,
``_get_seq_bucket``) and for token generation with prefix caching (``bucket[1] > computed``).
"""
from __future__ import annotations

import math
from typing import Any

CTE, TKG = "context_encoding_model", "token_generation_model"


def generate_buckets(min_length: int, max_length: int) -> list[int]:
    """autobucketing.generate_buckets: powers of two from min up to (not including) max, then max."""
    if min_length == max_length:
        return [max_length]
    return [2**i for i in range(int(math.log2(min_length)), round(math.log2(max_length)))] + [max_length]


def cte_buckets(nc: Any) -> list:
    """generate_buckets_for_cte (l.149-200): 1-D lengths, or [active, prefix] pairs with prefix caching."""
    mcl = nc.max_context_length
    if nc.is_prefix_caching:
        if not nc.enable_bucketing:
            return [[mcl, 0], [mcl, mcl]]
        if nc.context_encoding_buckets is not None:
            # generate_2d_buckets_for_prefix_caching_from_config: `[0] + prefix_buckets` raises TypeError on None
            prefixes = [0] + nc.prefix_buckets
            return [[a, p] for a in nc.context_encoding_buckets for p in prefixes]
        sizes = generate_buckets(512, mcl)
        return [[a, p] for a in sizes for p in [0] + sizes]
    if not nc.enable_bucketing:
        return [mcl]
    return list(nc.context_encoding_buckets or generate_buckets(128, mcl))


def tkg_buckets(nc: Any) -> list:
    """generate_buckets_for_tkg (l.226-279)."""
    if nc.is_prefix_caching:
        if not nc.enable_bucketing:
            return [[1, nc.max_length]]
        return [[1, b] for b in (nc.token_generation_buckets or generate_buckets(256, nc.max_length))]
    if not nc.enable_bucketing:
        return [nc.max_length]
    return list(nc.token_generation_buckets or generate_buckets(128, nc.max_length))


def seq_bucket(buckets: list[int], input_len: int, tag: str, truncate: bool = False) -> int:
    """model_wrapper._get_seq_bucket (l.898-916), first_fit."""
    for b in buckets:
        if input_len < b:
            return b
    if input_len == buckets[-1] or truncate:
        return buckets[-1]
    raise ValueError(f"Input len {input_len} exceeds largest bucket ({buckets[-1]}) for {tag}")


def prefix_caching_cte_bucket(buckets: list, prefill_len: int, prefix_len: int, truncate: bool = False
                              ) -> tuple[int, int]:
    """get_target_2d_bucket_for_prefix_caching, context encoding (l.918-1040): (prefill bucket, prefix bucket).

    The prefix tokens that fit in the prefill bucket's empty slots are recomputed instead of read from the cache.
    """
    prefills = list(dict.fromkeys(b[0] for b in buckets))
    prefixes = list(dict.fromkeys(b[1] for b in buckets))
    if 256 < prefill_len + prefix_len <= 512 and [512, 0] in buckets:  # l.1000: recompute everything in [512, 0]
        return 512, 0
    chosen = next((b for b in prefills if b >= prefill_len), None)
    if chosen is None:
        if not truncate:
            raise ValueError(f"Prefill len {prefill_len} exceeds largest bucket ({prefills[-1]}) for {CTE}")
        chosen = prefills[-1]
    horizontal = max(0, prefix_len - max(0, chosen - prefill_len))
    index = next((i for i, p in enumerate(prefixes) if p >= horizontal), len(prefixes))
    assert index != len(prefixes), f"Prefix len {horizontal} exceeds largest bucket {prefixes[-1]} for {CTE}"
    return chosen, prefixes[index]


def prefix_caching_tkg_bucket(buckets: list, computed: int, truncate: bool = False) -> int:
    """get_target_2d_bucket_for_prefix_caching, token generation: the smallest prefix bucket > computed."""
    fits = [b[1] for b in buckets if b[1] > computed]
    if fits:
        return min(fits)
    if truncate:
        return buckets[-1][1]
    raise ValueError(f"Input len {computed} exceeds largest bucket ({buckets[-1][1]}) for {TKG}")
