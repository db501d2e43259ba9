"""Engine configuration."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CPU_KV_FRACTION = 0.2
DEFAULT_GPU_KV_FRACTION = 0.5
MAX_DEFAULT_KV_BYTES = 8 << 30
# Tokens a step that decodes may do (decodes first, prefill chunks fill the rest). Measured on the 2-core CPU with
# 32 streams decoding at ~2k context (docs/engine.md, "Decodes never wait behind a long prefill"): a step with a
# 256-token chunk costs about 2x a decode-only step (ITL p99/p50 1.96), a 512-token one 6x (6.27, over the 3x
# bound), though 512 gave 4-6% more output tok/s on the peer workload. On a 2-core Xeon, 32 streams: 2.57. With
# few streams decoding a 256-token chunk costs more times a decode-only step (6 streams: 6.3x; docs/engine.md).
DEFAULT_STEP_TOKEN_BUDGET = 256


def default_step_token_budget(max_num_batched_tokens: int, max_num_seqs: int,
                              context_buckets: tuple[int, ...] = ()) -> int:
    """The step budget when none is given: DEFAULT_STEP_TOKEN_BUDGET (or 2x max_num_seqs when that is larger, so
    prefills progress while every sequence decodes), never above the hard cap. With compiled context buckets
    (Neuron, bucketed CPU): rounded down to a bucket, so a step's prefill chunk pads to that bucket and no larger
    one (the smallest bucket when none is that small)."""
    budget = min(max_num_batched_tokens, max(DEFAULT_STEP_TOKEN_BUDGET, 2 * max_num_seqs))
    if context_buckets:
        fitting = [b for b in context_buckets if b <= budget]
        budget = min(fitting[-1] if fitting else context_buckets[0], max_num_batched_tokens)
    return budget


def _total_ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_kv_cache_bytes(device: str) -> int:
    """The KV budget when none is given: $APPLIANCE_KV_CACHE_BYTES, else a fraction of RAM (CPU) or free GPU memory."""
    env = os.environ.get("APPLIANCE_KV_CACHE_BYTES")
    if env:
        return int(env)
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free * DEFAULT_GPU_KV_FRACTION)
    return min(int(_total_ram_bytes() * DEFAULT_CPU_KV_FRACTION), MAX_DEFAULT_KV_BYTES)


@dataclass
class EngineConfig:
    """Everything that shapes one engine replica.

    dtype: "float32" | "bfloat16" | "float16" | None. None means the checkpoint's torch_dtype on CUDA and float32 on
    the CPU (half-precision matmuls are slow on most CPUs and float32 is what exactness tests compare against).
    num_threads: CPU intra-op threads; None means $APPLIANCE_NUM_THREADS, else every core. On a machine shared with
    other busy processes, 1 is often much faster than all cores (OpenMP threads wait on each other).
    num_kv_blocks: None sizes the paged KV cache from kv_cache_memory_bytes (itself defaulting to
    $APPLIANCE_KV_CACHE_BYTES or a fraction of memory). max_model_len: None means max_position_embeddings.
    max_num_batched_tokens is the hard cap on a step's tokens (what executors size their shapes for);
    step_token_budget is how many tokens a step that decodes may do: running decodes first, prefill chunks fill the
    rest, so a decode never waits behind a long prompt (None: default_step_token_budget; with chunked prefill off it
    is the hard cap, since a whole prompt must fit one step).
    """

    model: str
    device: str = "cpu"
    dtype: str | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    num_kv_blocks: int | None = None
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    step_token_budget: int | None = None
    scheduling_policy: str = "fcfs"
    seed: int = 0
    num_threads: int | None = None
    bucketing: Any = None  # None, or {"batch_sizes", "context_lengths", "token_lengths"} / a BucketSet: static shapes
    hf_config: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        path = Path(self.model)
        if not (path / "config.json").is_file():
            raise ValueError(f"model must be a directory with config.json, got {self.model!r}")
        self.hf_config = json.loads((path / "config.json").read_text())
        context = int(self.hf_config.get("max_position_embeddings", 2048))
        if self.max_model_len is None:
            self.max_model_len = context
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ValueError(f"scheduling_policy must be 'fcfs' or 'priority', got {self.scheduling_policy!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "max_model_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.bucketing is not None:
            from appliance.runtime.neuron.buckets import BucketSet

            if not isinstance(self.bucketing, BucketSet):
                try:
                    self.bucketing = BucketSet.build(**self.bucketing)
                except TypeError as exc:
                    raise ValueError(f"bucketing must give batch_sizes, context_lengths and token_lengths: {exc}") from None
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError("num_kv_blocks must be >= 1")
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError("max_num_batched_tokens must be >= max_model_len when chunked prefill is off")
        self._resolve_step_token_budget()

    def _resolve_step_token_budget(self) -> None:
        cap = int(self.max_num_batched_tokens)
        if self.step_token_budget is None:
            buckets = self.bucketing.context_lengths if self.bucketing is not None else ()
            self.step_token_budget = (default_step_token_budget(cap, int(self.max_num_seqs), buckets)
                                      if self.enable_chunked_prefill else cap)
            return
        budget = self.step_token_budget
        if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= cap:
            raise ValueError(f"step_token_budget must be an integer between 1 and max_num_batched_tokens ({cap}), "
                             f"got {budget!r}")
        if not self.enable_chunked_prefill and budget != cap:
            raise ValueError("step_token_budget must equal max_num_batched_tokens when chunked prefill is off "
                             "(a whole prompt must fit one step)")
        if budget < min(int(self.max_num_seqs), cap):
            raise ValueError(f"step_token_budget ({budget}) must be at least max_num_seqs ({self.max_num_seqs}): "
                             "every running sequence decodes one token per step and prefills need the rest")

    @property
    def torch_dtype_name(self) -> str:
        if self.dtype:
            return self.dtype
        if self.device == "cpu":
            return "float32"
        return str(self.hf_config.get("torch_dtype") or self.hf_config.get("dtype") or "float32")
