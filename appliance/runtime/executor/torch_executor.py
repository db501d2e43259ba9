"""The Torch executor (CPU, CUDA): ragged batches over the paged KV cache, no padding."""
from __future__ import annotations

import os
import time

import torch

from appliance.runtime import cpu_extension
from appliance.runtime.config import EngineConfig, default_kv_cache_bytes
from appliance.runtime.executor.interface import Executor, StepBatch
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, DecodeGroup, PrefillChunk
from appliance.runtime.model.llama import LlamaForCausalLM
from appliance.runtime.model.loader import DTYPES, load_weights
from appliance.runtime.stage_clock import NULL_CLOCK, NullClock


# Decodes per attention call: one call serves a whole step (sorted by context length, tasks handed out longest first
# inside the extension); groups of 16 cost a call and a thread wake-up each, for nothing.
DECODE_GROUP_SIZE = 256
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS after every large temporary: a CPU forward
    allocates many multi-megabyte tensors, and re-faulting their pages each step costs more than the math."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    except (OSError, AttributeError):
        pass


def _rows(batch: StepBatch, i: int, last: int) -> range:
    """The flat token rows whose logits sequence i gets: its last token, or all its tokens (prompt logprobs)."""
    return range(last - batch.logit_rows(i) + 1, last + 1)


class TorchExecutor(Executor):
    supports_prompt_logprobs = True
    clock: NullClock = NULL_CLOCK  # the step profile installs a StageClock here

    def __init__(self, config: EngineConfig, args: ModelArgs) -> None:
        self.device = config.device
        if self.device == "cpu":
            threads = config.num_threads or int(os.environ.get("APPLIANCE_NUM_THREADS", 0)) or os.cpu_count() or 1
            torch.set_num_threads(threads)
            keep_freed_memory()
            cpu_extension.ops()  # decides the attention path now, so its one log line comes at start-up
        self.dtype = DTYPES[config.torch_dtype_name]
        self.block_size = config.block_size
        self.vocab_size = args.vocab_size
        self.args = args
        with torch.inference_mode():
            weights = load_weights(config.model, self.dtype, self.device)
            self.model = LlamaForCausalLM(args, weights, int(config.max_model_len), self.device,
                                          pack_weights=self.device == "cpu")
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
            self.last_forward_s = 0.0
            return torch.empty(0, self.vocab_size, device=self.device)
        clock = self.clock
        input_ids, positions, meta, last_token = self.prepare(batch)
        rows = torch.tensor([r for i in range(len(batch)) for r in _rows(batch, i, last_token[i])], device=self.device)
        clock.mark("prepare (executor)")
        start = time.perf_counter()
        hidden = self.model.forward(input_ids, positions, meta, self.kv_caches, clock)
        logits = self.model.compute_logits(hidden[rows], clock) if len(rows) else hidden.new_empty(0, self.vocab_size)
        if self.device != "cpu":
            torch.cuda.synchronize()
        self.last_forward_s = time.perf_counter() - start
        return logits.float()

    def prepare(self, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, list[int]]:
        """Flat token layout (decodes sorted by context length, then prefill chunks) and attention metadata."""
        bs, dev = self.block_size, self.device
        n = len(batch)
        ctx = batch.context_lens
        decodes = sorted((i for i in range(n) if len(batch.token_ids[i]) == 1), key=ctx.__getitem__)
        prefills = [i for i in range(n) if len(batch.token_ids[i]) > 1]
        last_token = [0] * n
        ids = [batch.token_ids[i][0] for i in decodes]
        pos = [batch.start_positions[i] for i in decodes]
        slots = []
        for j, i in enumerate(decodes):
            p = pos[j]
            slots.append(batch.block_tables[i][p // bs] * bs + p % bs)
            last_token[i] = j
        meta = AttentionMetadata(slot_mapping=None, num_decode_tokens=len(decodes))  # type: ignore[arg-type]
        num_groups = -(-len(decodes) // DECODE_GROUP_SIZE)
        for g in range(num_groups):
            members = decodes[g * len(decodes) // num_groups : (g + 1) * len(decodes) // num_groups]
            width = -(-ctx[members[-1]] // bs)
            tables = [batch.block_tables[i][:width] + [0] * (width - min(width, len(batch.block_tables[i]))) for i in members]
            start = g * len(decodes) // num_groups
            meta.decode_groups.append(
                DecodeGroup(
                    start,
                    start + len(members),
                    torch.tensor(tables, dtype=torch.int32, device=dev),
                    torch.tensor([ctx[i] for i in members], dtype=torch.int32, device=dev),
                )
            )
        slot_parts = [torch.tensor(slots, dtype=torch.int64, device=dev)]
        offset = len(decodes)
        for i in prefills:
            chunk, start = batch.token_ids[i], batch.start_positions[i]
            ids.extend(chunk)
            pos.extend(range(start, start + len(chunk)))
            table = torch.tensor(batch.block_tables[i][: -(-ctx[i] // bs)], dtype=torch.int64, device=dev)
            p = torch.arange(start, start + len(chunk), device=dev)
            slot_parts.append(table[p // bs] * bs + p % bs)
            meta.prefills.append(PrefillChunk(offset, offset + len(chunk), ctx[i], table))
            offset += len(chunk)
            last_token[i] = offset - 1
        meta.slot_mapping = torch.cat(slot_parts) if len(slot_parts) > 1 else slot_parts[0]
        input_ids = torch.tensor(ids, dtype=torch.int64, device=dev)
        positions = torch.tensor(pos, dtype=torch.int64, device=dev)
        return input_ids, positions, meta, last_token
