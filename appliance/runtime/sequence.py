"""One sequence being generated: its tokens, how many of them are in the KV cache, and its blocks."""
from __future__ import annotations

import enum
import itertools
from typing import Any

_counter = itertools.count()


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """Prompt + completion token ids. ``num_computed_tokens`` of them have their K/V in the cache.

    Plain data: the scheduler and block manager read and write it without torch.
    """

    def __init__(
        self,
        request_id: str,
        token_ids: list[int],
        index: int = 0,
        cache_salt: str | None = None,
        priority: int = 0,
        max_tokens: int = 1 << 30,
        params: Any = None,
    ) -> None:
        self.seq_id = next(_counter)
        self.request_id = request_id
        self.index = index
        self.token_ids = list(token_ids)
        self.num_prompt_tokens = len(token_ids)
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # prompt tokens served from the prefix cache at the last allocation
        self.block_table: list[int] = []
        self.block_hashes: list[int] = []  # hash chain of the full blocks computed so far
        self.status = SequenceStatus.WAITING
        self.cache_salt = cache_salt
        self.priority = priority
        self.arrival = self.seq_id
        self.max_tokens = max_tokens
        self.params = params
        self.finish_reason: str | None = None
        self.num_preemptions = 0
        self.needs_prompt_logits = False  # prompt logprobs wanted and not all computed yet: no prefix-cache reads

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        return f"Sequence({self.request_id}#{self.index}, len={len(self)}, computed={self.num_computed_tokens})"

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def in_prefill(self) -> bool:
        return self.num_computed_tokens < self.num_prompt_tokens

    def append_token(self, token_id: int) -> None:
        self.token_ids.append(token_id)

    def reset_for_recompute(self) -> None:
        """After preemption: everything (prompt and completion so far) will be recomputed as one prompt."""
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0
        self.block_table = []
        self.block_hashes = []
        self.status = SequenceStatus.WAITING
        self.num_preemptions += 1
