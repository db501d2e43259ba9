"""Engine-wide counters, read by the async loop and the metrics exposition."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineStats:
    num_running: int = 0
    num_waiting: int = 0
    kv_blocks_used: int = 0
    kv_blocks_total: int = 0
    prefix_cache_queried_tokens: int = 0  # cumulative
    prefix_cache_hit_tokens: int = 0  # cumulative
    num_preemptions: int = 0  # cumulative
    steps: int = 0  # cumulative
    prompt_tokens_total: int = 0  # cumulative, computed prompt tokens (recomputation included)
    generation_tokens_total: int = 0  # cumulative
    last_step_num_batched_tokens: int = 0
    last_step_num_seqs: int = 0
    step_time_s: float = 0.0  # last step
    forward_time_s: float = 0.0  # last step
    step_time_total_s: float = 0.0
    forward_time_total_s: float = 0.0

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0

    @property
    def outside_forward_fraction(self) -> float:
        """Share of step time spent outside the model forward (scheduling, input prep, sampling, detokenizing)."""
        if not self.step_time_total_s:
            return 0.0
        return 1.0 - self.forward_time_total_s / self.step_time_total_s
