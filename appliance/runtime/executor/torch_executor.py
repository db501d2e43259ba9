"""The Torch executor (CPU, CUDA): ragged batches over the paged KV cache, no padding."""
from __future__ import annotations

import os

import torch

from appliance.runtime.config import EngineConfig, default_kv_cache_bytes
from appliance.runtime.executor.interface import Executor, StepBatch
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, PrefillChunk
from appliance.runtime.model.llama import LlamaForCausalLM
from appliance.runtime.model.loader import DTYPES, load_weights


class TorchExecutor(Executor):
    def __init__(self, config: EngineConfig, args: ModelArgs) -> None:
        self.device = config.device
        if self.device == "cpu":
            torch.set_num_threads(config.num_threads or os.cpu_count() or 1)
        self.dtype = DTYPES[config.torch_dtype_name]
        self.block_size = config.block_size
        self.vocab_size = args.vocab_size
        self.args = args
        with torch.inference_mode():
            weights = load_weights(config.model, self.dtype, self.device)
            self.model = LlamaForCausalLM(args, weights, int(config.max_model_len), self.device)
        del weights
        if config.num_kv_blocks is not None:
            self.num_kv_blocks = config.num_kv_blocks
        else:
            budget = config.kv_cache_memory_bytes or default_kv_cache_bytes(self.device)
            useful = config.max_num_seqs * -(-int(config.max_model_len) // self.block_size)
            self.num_kv_blocks = max(1, min(budget // self.kv_cache_bytes_per_block(), useful))
        shape = (self.num_kv_blocks, self.block_size, args.num_kv_heads, args.head_dim)
        self.kv_caches = [
            (torch.zeros(shape, dtype=self.dtype, device=self.device), torch.zeros(shape, dtype=self.dtype, device=self.device))
            for _ in range(args.num_layers)
        ]

    def kv_cache_bytes_per_block(self) -> int:
        a = self.args
        return 2 * a.num_layers * self.block_size * a.num_kv_heads * a.head_dim * self.dtype.itemsize

    @torch.inference_mode()
    def execute(self, batch: StepBatch) -> torch.Tensor:
        if not len(batch):
            return torch.empty(0, self.vocab_size, device=self.device)
        order = sorted(range(len(batch)), key=lambda i: len(batch.token_ids[i]) > 1)
        input_ids, positions, seq_of_token = [], [], []
        for j, i in enumerate(order):
            ids, start = batch.token_ids[i], batch.start_positions[i]
            input_ids.extend(ids)
            positions.extend(range(start, start + len(ids)))
            seq_of_token.extend([j] * len(ids))
        max_blocks = max(len(batch.block_tables[i]) for i in order)
        tables = [batch.block_tables[i] + [0] * (max_blocks - len(batch.block_tables[i])) for i in order]
        dev = self.device
        bt = torch.tensor(tables, dtype=torch.int64, device=dev)
        pos = torch.tensor(positions, dtype=torch.int64, device=dev)
        tok_seq = torch.tensor(seq_of_token, dtype=torch.int64, device=dev)
        slots = bt[tok_seq, pos // self.block_size] * self.block_size + pos % self.block_size

        num_decodes = sum(1 for i in order if len(batch.token_ids[i]) == 1)
        meta = AttentionMetadata(slot_mapping=slots, num_decode_tokens=num_decodes)
        if num_decodes:
            meta.decode_block_tables = bt[:num_decodes].to(torch.int32)
            meta.decode_context_lens = torch.tensor(
                [batch.context_lens[i] for i in order[:num_decodes]], dtype=torch.int32, device=dev
            )
        start = num_decodes
        for j in range(num_decodes, len(order)):
            i = order[j]
            n, ctx = len(batch.token_ids[i]), batch.context_lens[i]
            nblocks = -(-ctx // self.block_size)
            meta.prefills.append(PrefillChunk(start, start + n, ctx, bt[j, :nblocks]))
            start += n

        hidden = self.model.forward(torch.tensor(input_ids, dtype=torch.int64, device=dev), pos, meta, self.kv_caches)
        ends, offset = {}, 0
        for i in order:
            offset += len(batch.token_ids[i])
            ends[i] = offset - 1
        rows = [ends[i] for i in range(len(batch)) if batch.needs_logits[i]]
        if not rows:
            return torch.empty(0, self.vocab_size, device=dev)
        return self.model.compute_logits(hidden[torch.tensor(rows, device=dev)])
