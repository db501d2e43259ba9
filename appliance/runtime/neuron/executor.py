"""NeuronExecutor: the engine's Executor over a compiled Neuron artifact (NxD Inference).

The engine schedules and samples on the host exactly as on the CPU; this executor turns each StepBatch into the
backend's calls (one context-encoding call per prefill, one token-generation call for all decodes), checks every
call against the compiled buckets, and returns float32 logits on the host. Written against the pinned SDK's
documented API and exercised only against SDK test doubles: it has not run on Inferentia hardware.

Two things the StepBatch does not carry, the executor keeps itself:

* the token ids behind every KV slot it has written, so a prefill that starts after a cached prefix (prefix-cache hit
  or a later chunk) can re-send the prefix token ids NxD Inference's context encoding expects;
* for the contiguous KV layout, which artifact cache line (slot) each sequence owns, keyed by the sequence's first
  KV block (exclusive to it when prefix caching is off, which that layout requires).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from appliance.runtime.executor.interface import Executor, StepBatch
from appliance.runtime.neuron.buckets import BucketSet
from appliance.runtime.neuron.compile import load_manifest, make_backend
from appliance.runtime.neuron.cores import check_visible_cores
from appliance.runtime.neuron.options import NeuronCompileOptions
from appliance.runtime.neuron.steps import SeqStep


class SlotTable:
    """Stable artifact batch lines for sequences, keyed by their first KV block (contiguous layout)."""

    def __init__(self, num_slots: int):
        self.num_slots = num_slots
        self.owner: dict[int, int] = {}  # first block -> slot
        self.last_seen = [-1] * num_slots
        self.clock = 0

    def assign(self, first_blocks: list[int], new: list[bool]) -> list[int]:
        self.clock += 1
        in_step = set(first_blocks)
        out = []
        for block, is_new in zip(first_blocks, new):
            if block not in self.owner:
                if not is_new:
                    raise RuntimeError(f"sequence with first block {block} decodes without a prefill on this executor")
                self.owner[block] = self._free_slot(in_step)
            slot = self.owner[block]
            self.last_seen[slot] = self.clock
            out.append(slot)
        return out

    def _free_slot(self, in_step: set[int]) -> int:
        used = set(self.owner.values())
        for slot in range(self.num_slots):
            if slot not in used:
                return slot
        stale = [(self.last_seen[s], b, s) for b, s in self.owner.items() if b not in in_step]
        if not stale:
            raise RuntimeError(f"more than {self.num_slots} sequences at once; the artifact's batch size")
        _, block, slot = min(stale)
        del self.owner[block]
        return slot


class NeuronExecutor(Executor):
    device = "cpu"  # logits come back to the host, where the engine samples

    def __init__(self, artifact_dir: str | Path, environ: dict[str, str] | None = None, api: Any = None):
        self.artifact_dir = Path(artifact_dir)
        self.manifest = load_manifest(self.artifact_dir)
        self.options = NeuronCompileOptions.from_dict(self.manifest["options"])
        o = self.options
        if o.on_device_sampling:
            raise ValueError("on_device_sampling: this artifact samples on the device, but the engine samples on the "
                             "host from logits (per-request temperature, penalties, logprobs); compile with "
                             "on_device_sampling=false to serve it")
        self.cores = check_visible_cores(o.tp_degree, environ)
        self.buckets: BucketSet = o.buckets
        self.block_size = o.block_size
        self.vocab_size = int(self.manifest["vocab_size"])
        if o.block_layout:
            self.num_kv_blocks = o.resolved_num_blocks
        else:
            self.num_kv_blocks = o.max_batch * -(-o.max_model_len // o.block_size)
        self._tokens = [0] * (self.num_kv_blocks * self.block_size)
        self._slots = SlotTable(o.max_batch)
        self.backend = make_backend(o, self.manifest["family"], api)
        self.backend.vocab_size = self.vocab_size
        self.backend.load(self.artifact_dir)
        self.nki_operations = list(o.kernel_ops)  # inside the compiled graph (nxdi_llama.py), not the host's
        self.last_calls: list[dict[str, Any]] = []
        self.last_forward_s = 0.0

    def kv_cache_bytes_per_block(self) -> int:
        kv = self.manifest["memory_estimate"]["kv_bytes_per_core"]
        return max(1, kv * self.options.tp_degree // max(1, self.options.kv_tokens()) * self.block_size)

    def check_engine_config(self, config: Any) -> None:
        """Fit an EngineConfig to the artifact: ValueError naming the field it cannot serve; clamps max_model_len."""
        o = self.options
        if config.block_size != o.block_size:
            raise ValueError(f"block_size: the artifact was compiled with block_size={o.block_size}, the engine "
                             f"has {config.block_size}")
        if config.max_num_seqs > o.max_batch:
            raise ValueError(f"max_num_seqs: {config.max_num_seqs} exceeds the artifact's batch size {o.max_batch}")
        if not o.block_layout:
            for name in ("enable_prefix_caching", "enable_chunked_prefill"):
                if getattr(config, name):
                    raise ValueError(f"{name}: must be false for an artifact with the contiguous KV layout")
        config.max_model_len = min(int(config.max_model_len), o.max_model_len, o.context_length)

    # ---- one step -------------------------------------------------------------------------------------------------

    def _history(self, table: list[int], start: int) -> tuple[int, ...]:
        bs = self.block_size
        return tuple(self._tokens[table[p // bs] * bs + p % bs] for p in range(start))

    def _record(self, table: list[int], start: int, token_ids: list[int]) -> None:
        bs = self.block_size
        for j, tok in enumerate(token_ids):
            p = start + j
            self._tokens[table[p // bs] * bs + p % bs] = tok

    def _steps(self, batch: StepBatch) -> list[SeqStep]:
        n = len(batch)
        if self.options.block_layout:
            slots = [0] * n
        else:
            slots = self._slots.assign([t[0] for t in batch.block_tables], [s == 0 for s in batch.start_positions])
        steps = []
        for i in range(n):
            toks, start, table = batch.token_ids[i], batch.start_positions[i], batch.block_tables[i]
            is_prefill = start == 0 or len(toks) > 1
            history = self._history(table, start) if is_prefill and self.options.block_layout else ()
            steps.append(SeqStep(i, slots[i], tuple(toks), start, tuple(table), history))
        return steps

    def _run(self, call: Any) -> Any:
        start = time.perf_counter()
        out = self.backend.run(call)
        self.last_forward_s += time.perf_counter() - start
        return out

    def execute(self, batch: StepBatch) -> Any:
        import torch

        rows: dict[int, Any] = {}
        self.last_calls = []
        self.last_forward_s = 0.0
        steps = self._steps(batch)
        for s in steps:
            self._record(list(s.block_table), s.start_pos, list(s.token_ids))
        prefills = [s for s in steps if s.is_prefill]
        decodes = [s for s in steps if not s.is_prefill]
        for s in prefills:
            length = s.end_pos if self.options.block_layout else len(s.token_ids)
            shape = self.buckets.prefill([length])
            out = self._run(self.backend.prefill_call(s, shape.length))
            self.last_calls.append({"kind": "prefill", "rows": 1, "batch": 1, "length": shape.length})
            rows[s.seq_id] = out.logits[0]
        if decodes:
            if self.options.block_layout:
                decodes = [SeqStep(d.seq_id, j, d.token_ids, d.start_pos, d.block_table) for j, d in enumerate(decodes)]
            shape = self.buckets.decode(len(decodes), max(d.end_pos for d in decodes))
            out = self._run(self.backend.decode_call(decodes))
            self.last_calls.append(
                {"kind": "decode", "rows": len(decodes), "batch": shape.batch, "length": shape.length}
            )
            for j, seq_id in enumerate(out.seq_ids):
                rows[seq_id] = out.logits[j]
        wanted = [i for i in range(len(batch)) if batch.needs_logits[i]]
        if not wanted:
            return torch.empty(0, self.vocab_size)
        return torch.stack([rows[i].float() for i in wanted])


def neuron_engine(
    artifact_dir: str | Path, environ: dict[str, str] | None = None, api: Any = None, **engine_kwargs: Any
):
    """An EngineCore serving a compiled Neuron artifact: the checkpoint's tokenizer, this executor, host sampling."""
    from appliance.runtime.config import EngineConfig, default_step_token_budget
    from appliance.runtime.engine import EngineCore

    executor = NeuronExecutor(artifact_dir, environ=environ, api=api)
    o = executor.options
    max_len = min(o.max_model_len, o.context_length)
    defaults = {"block_size": o.block_size, "max_num_seqs": o.max_batch, "num_kv_blocks": executor.num_kv_blocks,
                "max_model_len": max_len}
    if not o.block_layout:
        defaults.update(enable_prefix_caching=False, enable_chunked_prefill=False, max_num_batched_tokens=max_len)
    kwargs = {**defaults, **engine_kwargs}
    if o.block_layout and "step_token_budget" not in kwargs:  # chunks that pad to a compiled context bucket
        cap = int(kwargs.get("max_num_batched_tokens", EngineConfig.max_num_batched_tokens))
        kwargs["step_token_budget"] = default_step_token_budget(cap, int(kwargs["max_num_seqs"]),
                                                                o.buckets.context_lengths)
    config = EngineConfig(model=executor.manifest["model_dir"], device="cpu", **kwargs)
    executor.check_engine_config(config)
    return EngineCore(config, executor=executor)
