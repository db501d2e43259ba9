"""The Torch executor with static shapes: every step padded to the buckets a Neuron artifact would be compiled for.

Decodes are padded to a batch bucket (padding rows: token 0 at position 0, context 1) and every decode row's block
table to the blocks of a token-generation bucket; each prefill chunk's tokens are padded to a context bucket (the
padding is a separate causal chunk at position 0) and its block table to a token bucket. Padding writes only to one
scratch KV block the engine never allocates, and padding rows never reach the returned logits, so greedy output is
the same as the unbucketed executor's; `last_shapes` says how much of each step was padding.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from appliance.runtime.executor.interface import StepBatch
from appliance.runtime.executor.torch_executor import TorchExecutor
from appliance.runtime.model.attention import AttentionMetadata, DecodeGroup, PrefillChunk
from appliance.runtime.neuron.buckets import BucketSet, choose_bucket, pad_row


class BucketedTorchExecutor(TorchExecutor):
    supports_prompt_logprobs = False  # as on Neuron: the compiled graphs return each sequence's last row only

    def __init__(self, config: Any, args: Any, buckets: BucketSet) -> None:
        super().__init__(config, args)
        self.buckets = buckets
        if config.max_num_seqs > buckets.batch_sizes[-1]:
            raise ValueError(f"bucketing: max_num_seqs {config.max_num_seqs} exceeds the largest batch bucket "
                             f"{buckets.batch_sizes[-1]}")
        longest_chunk = min(int(config.max_num_batched_tokens), int(config.max_model_len))
        if longest_chunk > buckets.context_lengths[-1]:
            raise ValueError(f"bucketing: a prefill chunk can be {longest_chunk} tokens (min of "
                             f"max_num_batched_tokens and max_model_len) but the largest context bucket is "
                             f"{buckets.context_lengths[-1]}")
        if int(config.max_model_len) > buckets.token_lengths[-1]:
            raise ValueError(f"bucketing: max_model_len {config.max_model_len} exceeds the largest token bucket "
                             f"{buckets.token_lengths[-1]}")
        self.scratch_block = self.num_kv_blocks
        shape = (self.num_kv_blocks + 1, self.block_size, args.num_kv_heads, args.head_dim)
        zeros = lambda: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        self.kv_caches = [(zeros(), zeros()) for _ in range(args.num_layers)]
        self.last_shapes: list[dict[str, Any]] = []

    def _table(self, table: list[int], context_len: int) -> list[int]:
        width = -(-choose_bucket(self.buckets.token_lengths, context_len, "context length") // self.block_size)
        return pad_row(table[:width], width, self.scratch_block)

    def _slot(self, table: list[int], pos: int) -> int:
        return table[pos // self.block_size] * self.block_size + pos % self.block_size

    @torch.inference_mode()
    def execute(self, batch: StepBatch) -> torch.Tensor:
        dev, bs = self.device, self.block_size
        if not len(batch):
            self.last_forward_s = 0.0
            return torch.empty(0, self.vocab_size, device=dev)
        decodes = [i for i in range(len(batch)) if len(batch.token_ids[i]) == 1]
        prefills = [i for i in range(len(batch)) if len(batch.token_ids[i]) > 1]
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        logit_row: dict[int, int] = {}
        self.last_shapes = []
        meta = AttentionMetadata(slot_mapping=torch.empty(0), num_decode_tokens=0)
        if decodes:
            shape = self.buckets.decode(len(decodes), max(batch.context_lens[i] for i in decodes))
            width = -(-shape.length // bs)
            tables, lens = [], []
            for j, i in enumerate(decodes):
                start = batch.start_positions[i]
                ids.append(batch.token_ids[i][0])
                positions.append(start)
                slots.append(self._slot(batch.block_tables[i], start))
                tables.append(self._table(batch.block_tables[i], shape.length))
                lens.append(batch.context_lens[i])
                logit_row[i] = j
            for _ in range(shape.batch - len(decodes)):
                ids.append(0)
                positions.append(0)
                slots.append(self.scratch_block * bs)
                tables.append([self.scratch_block] * width)
                lens.append(1)
            meta.num_decode_tokens = shape.batch
            meta.decode_groups.append(DecodeGroup(
                0, shape.batch, torch.tensor(tables, dtype=torch.int32, device=dev),
                torch.tensor(lens, dtype=torch.int32, device=dev),
            ))
            self.last_shapes.append({"kind": "decode", "rows": len(decodes), "batch": shape.batch,
                                     "length": shape.length})
        for i in prefills:
            toks, start, ctx = batch.token_ids[i], batch.start_positions[i], batch.context_lens[i]
            n = len(toks)
            length = self.buckets.prefill([n]).length
            table = self._table(batch.block_tables[i], ctx)
            first = len(ids)
            ids.extend(toks)
            positions.extend(range(start, start + n))
            slots.extend(self._slot(table, p) for p in range(start, start + n))
            blocks = torch.tensor(table, dtype=torch.int64, device=dev)
            meta.prefills.append(PrefillChunk(first, first + n, ctx, blocks))
            logit_row[i] = first + n - 1
            pad = length - n
            if pad:
                ids.extend([0] * pad)
                positions.extend([0] * pad)
                slots.extend(self.scratch_block * bs + j % bs for j in range(pad))
                meta.prefills.append(PrefillChunk(first + n, first + length, pad, torch.tensor([self.scratch_block])))
            self.last_shapes.append({"kind": "prefill", "rows": 1, "tokens": n, "length": length})
        meta.slot_mapping = torch.tensor(slots, dtype=torch.int64, device=dev)
        input_ids = torch.tensor(ids, dtype=torch.int64, device=dev)
        pos = torch.tensor(positions, dtype=torch.int64, device=dev)
        rows = torch.tensor([logit_row[i] for i in range(len(batch)) if batch.needs_logits[i]], device=dev)
        start = time.perf_counter()
        hidden = self.model.forward(input_ids, pos, meta, self.kv_caches)
        logits = self.model.compute_logits(hidden[rows]) if len(rows) else hidden.new_empty(0, self.vocab_size)
        if dev != "cpu":
            torch.cuda.synchronize()
        self.last_forward_s = time.perf_counter() - start
        return logits.float()
