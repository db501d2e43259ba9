"""NxD Inference backend (neuronx-distributed-inference 0.8, Neuron SDK 2.28): configure, compile, load, run steps.

Written against the NxD Inference API reference and source of that release; exercised here only against test doubles
of the SDK (tests/neuron/sdk_doubles), never on Inferentia hardware.

Mapping of one engine step (the same split vLLM's Neuron worker makes):

* each prefilling sequence -> one context-encoding call (ctx_batch_size=1): the sequence's tokens from position 0,
  positions 0..n-1, its slot as seq_ids, and with the block KV layout its slot_mapping, block_table,
  full_context_lens and computed_context_lens (the cached prefix, rounded down to a whole block);
* all decoding sequences -> one token-generation call: the last token and its position per sequence, and with the
  block KV layout the slot of that position, the block tables, full_context_lens = position + 1 and
  computed_context_lens = position.

Block ids are shifted by one: NxD Inference pads block tables with block 0, so block 0 is reserved and the engine's
block b is the artifact's block b + 1. Slot mappings are padded with -1 (no KV write).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.runtime.neuron.buckets import pad_row
from appliance.runtime.neuron.options import NeuronCompileOptions
from appliance.runtime.neuron.steps import BackendCall, SdkBackend, SeqStep, StepOutput

SLOT_PAD = -1
BLOCK_TABLE_PAD = 0
BLOCK_OFFSET = 1


def neuron_config_kwargs(options: NeuronCompileOptions, artifact_dir: str | Path | None = None) -> dict[str, Any]:
    """The NeuronConfig keyword arguments a compile passes, from the compile options."""
    o = options
    b = o.buckets
    kw: dict[str, Any] = dict(
        tp_degree=o.tp_degree,
        torch_dtype=o.dtype,
        batch_size=o.max_batch,
        ctx_batch_size=1,
        tkg_batch_size=o.max_batch,
        max_batch_size=o.max_batch,
        is_continuous_batching=True,
        padding_side="right",
        seq_len=o.max_model_len,
        max_context_length=o.context_length,
        enable_bucketing=True,
        context_encoding_buckets=list(b.context_lengths),
        token_generation_buckets=list(b.token_lengths),
        save_sharded_checkpoint=True,
    )
    if o.block_layout:
        kw.update(
            is_block_kv_layout=True,
            is_prefix_caching=True,
            pa_block_size=o.block_size,
            pa_num_blocks=o.resolved_num_blocks,
            prefix_buckets=list(b.context_lengths[:-1]) or list(b.context_lengths),
        )
    elif len(b.batch_sizes) > 1:
        kw["token_generation_batches"] = list(b.batch_sizes)
    if o.on_device_sampling:
        kw["on_device_sampling_config"] = dict(dynamic=True, do_sample=True, top_k=1, global_topk=256)
    if o.quantization == "int8":
        kw.update(
            quantized=True,
            quantization_dtype="int8",
            quantization_type="per_channel_symmetric",
            quantized_checkpoints_path=str(Path(artifact_dir or ".") / "quantized"),
        )
    if o.kernels:
        kw.update(fused_qkv=True, qkv_kernel_enabled=True, mlp_kernel_enabled=True, attn_kernel_enabled=True)
    kw.update(o.extra)
    return kw


class NxdiBackend(SdkBackend):
    """One NxD Inference model for one artifact."""

    name = "nxdi"

    def _load_api(self) -> Any:
        from appliance.runtime.neuron.sdk import load_nxdi

        return load_nxdi()

    @property
    def model_cls(self) -> Any:
        return self.api.model_classes[self.family]

    def inference_config(self, model_dir: str | Path, artifact_dir: str | Path | None = None) -> Any:
        kwargs = neuron_config_kwargs(self.options, artifact_dir)
        ods = kwargs.pop("on_device_sampling_config", None)
        if ods is not None:
            kwargs["on_device_sampling_config"] = self.api.OnDeviceSamplingConfig(**ods)
        neuron_config = self.api.NeuronConfig(**kwargs)
        return self.model_cls.get_config_cls()(
            neuron_config, load_config=self.api.load_pretrained_config(str(model_dir))
        )

    def compile(self, model_dir: str | Path, artifact_dir: str | Path) -> None:
        """Trace and compile to `artifact_dir` (neuron_config.json, model.pt, weights/tp<rank>_sharded_checkpoint)."""
        artifact_dir = Path(artifact_dir)
        config = self.inference_config(model_dir, artifact_dir)
        if self.options.quantization == "int8":
            (artifact_dir / "quantized").mkdir(parents=True, exist_ok=True)
            self.model_cls.save_quantized_state_dict(str(model_dir), config)
        model = self.model_cls(str(model_dir), config)
        model.compile(str(artifact_dir))

    def load(self, artifact_dir: str | Path) -> None:
        """Load a compiled artifact onto the NeuronCores this process may see (NEURON_RT_VISIBLE_CORES)."""
        self.model = self.model_cls(str(artifact_dir))
        self.model.load(str(artifact_dir))

    # ---- per-step calls -------------------------------------------------------------------------------------------

    def _sampling(self, steps: list[SeqStep]) -> Any:
        return self.api.prepare_sampling_params(
            batch_size=len(steps),
            top_k=[s.sampling.top_k if s.sampling.top_k > 0 else 1 for s in steps],
            top_p=[s.sampling.top_p for s in steps],
            temperature=[s.sampling.temperature for s in steps],
        )

    def _neuron_block_table(self, step: SeqStep) -> list[int]:
        width = -(-self.options.max_model_len // self.options.block_size)
        return pad_row([b + BLOCK_OFFSET for b in step.block_table], width, BLOCK_TABLE_PAD)

    def _slot(self, step: SeqStep, pos: int) -> int:
        bs = self.options.block_size
        return (step.block_table[pos // bs] + BLOCK_OFFSET) * bs + pos % bs

    def prefill_call(self, step: SeqStep, length_bucket: int) -> BackendCall:
        import torch

        if not self.options.block_layout and step.start_pos != 0:
            raise ValueError(f"sequence {step.seq_id}: the contiguous KV layout prefills whole prompts only "
                             f"(got a prefill starting at position {step.start_pos}); disable chunked prefill and "
                             "prefix caching or compile with kv_layout='block'")
        tokens = list(step.history) + list(step.token_ids)
        if len(tokens) != step.end_pos:
            raise ValueError(f"sequence {step.seq_id}: prefill at position {step.start_pos} needs the "
                             f"{step.start_pos} earlier token ids (history), got {len(step.history)}")
        n = len(tokens)
        kwargs: dict[str, Any] = dict(
            input_ids=torch.tensor([pad_row(tokens, length_bucket, 0)], dtype=torch.long),
            position_ids=torch.tensor([pad_row(list(range(n)), length_bucket, 0)], dtype=torch.long),
            seq_ids=torch.tensor([step.slot], dtype=torch.long),
            sampling_params=self._sampling([step]),
        )
        if self.options.block_layout:
            computed = (step.start_pos // self.options.block_size) * self.options.block_size
            slots = [self._slot(step, p) for p in range(computed, n)]
            kwargs.update(
                slot_mapping=torch.tensor([pad_row(slots, self.options.max_model_len, SLOT_PAD)], dtype=torch.long),
                block_table=torch.tensor([self._neuron_block_table(step)], dtype=torch.long),
                full_context_lens=torch.tensor([[n]], dtype=torch.long),
                computed_context_lens=torch.tensor([[computed]], dtype=torch.long),
            )
        return BackendCall("prefill", [step.seq_id], kwargs)

    def decode_call(self, steps: list[SeqStep]) -> BackendCall:
        import torch

        kwargs: dict[str, Any] = dict(
            input_ids=torch.tensor([[s.token_ids[0]] for s in steps], dtype=torch.long),
            position_ids=torch.tensor([[s.start_pos] for s in steps], dtype=torch.long),
            seq_ids=torch.tensor([s.slot for s in steps], dtype=torch.long),
            sampling_params=self._sampling(steps),
        )
        if self.options.block_layout:
            kwargs.update(
                slot_mapping=torch.tensor([[self._slot(s, s.start_pos)] for s in steps], dtype=torch.long),
                block_table=torch.tensor([self._neuron_block_table(s) for s in steps], dtype=torch.long),
                full_context_lens=torch.tensor([[s.end_pos] for s in steps], dtype=torch.long),
                computed_context_lens=torch.tensor([[s.start_pos] for s in steps], dtype=torch.long),
            )
        return BackendCall("decode", [s.seq_id for s in steps], kwargs)

    def run(self, call: BackendCall) -> StepOutput:
        if self.model is None:
            raise RuntimeError("load() the artifact before running steps")
        out = self.model(**call.kwargs)
        rows = len(call.seq_ids)
        logits = getattr(out, "logits", None)
        tokens = getattr(out, "tokens", None) if self.options.on_device_sampling else None
        if logits is not None:
            logits = logits[:rows, -1, :] if logits.dim() == 3 else logits[:rows]
        if tokens is not None:
            tokens = tokens.reshape(tokens.shape[0], -1)[:rows, -1]
        return StepOutput(call.seq_ids, logits=logits, tokens=tokens)
