"""NxD Inference backend (neuronx-distributed-inference 0.8, Neuron SDK 2.28): configure, compile, load, run steps.

Written against the source of that release (file names below are under ``neuronx_distributed_inference/``);
exercised here against the project's SDK emulator (appliance/runtime/neuron/emulator), never on Inferentia hardware.

One engine step becomes (the split vLLM's Neuron worker makes):

* each prefilling sequence -> one context-encoding call (ctx_batch_size=1). Block layout (prefix caching): the whole
  sequence from position 0 (routing needs ``position_ids.min() == 0``, models/model_base.py ``_get_model_outputs``),
  ``slot_mapping`` for the uncached tokens only, the block table, and 2-D ``full_context_lens`` /
  ``computed_context_lens`` (the cached prefix, rounded down to a whole block); NxD Inference pads to its 2-D
  [prefill, prefix] buckets itself (models/model_wrapper.py ``_pad_prefix_caching_inputs``). Contiguous layout: the
  prompt unpadded with an explicit attention mask; a 1-token prompt is padded to the largest bucket by us, since the
  SDK pads position ids with 1 and takes the logits at the largest position id (model_wrapper ``pad_inputs``,
  model_base ``NeuronBaseModel.forward``), which would be a padding row.
* all decoding sequences -> one token-generation call. Contiguous layout: rows in cache-line (seq id) order, because a
  full batch is not reordered and row i writes line i (modules/kvcache/kv_cache_manager.py); and
  ``apply_seq_ids_mask`` so the rows the SDK adds to fill the batch write past ``max_length`` instead of into the
  cache line of a live sequence missing from the call (model_wrapper ``_forward_with_pad``).

Block ids are the engine's own: block 0 is an ordinary block (the SDK pads block tables with 0 and masks them) and
the SDK reserves one extra block after ``pa_num_blocks`` for writes of slot -1 (kvcache/block_kv_cache_manager.py).
The returned logits are ``[rows, 1, padded vocab]`` with the padding rows already removed; the vocabulary padding of
the lm_head is cut off here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.runtime.neuron.buckets import pad_row
from appliance.runtime.neuron.options import NeuronCompileOptions
from appliance.runtime.neuron.steps import BackendCall, SdkBackend, SeqStep, StepOutput

BLOCK_TABLE_PAD = 0
WORKDIR_ENV = "BASE_COMPILE_WORK_DIR"  # models/application_base.py get_builder


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
            # The prefix dimension must reach max_context_length: a cached prefix is only partly absorbed by the
            # prefill bucket's empty slots, and past the largest prefix bucket model_wrapper.py asserts "Prefix len
            # ... exceeds largest bucket" (get_target_2d_bucket_for_prefix_caching).
            prefix_buckets=list(b.context_lengths),
            # Only the flash-attention kernel masks the cached prefix on a LNC1 core (attention_base.py
            # get_flash_attention_strategy: attn_kernel_enabled and a prefill bucket >= 512).
            attn_kernel_enabled=True,
        )
    else:
        kw["apply_seq_ids_mask"] = True
        if len(b.batch_sizes) > 1:
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
    if o.kernel_ops:
        # The appliance's own kernels, inside its own model class (nxdi_llama.py); NxD Inference's QKV/MLP kernel
        # flags stay off (with int8 the QKV kernel would need modules_to_not_convert, models/config.py l.518).
        kw["appliance_kernels"] = list(o.kernel_ops)
    kw.update(o.extra)
    return kw


class NxdiBackend(SdkBackend):
    """One NxD Inference model for one artifact."""

    name = "nxdi"
    _kernel_cls: Any = None

    def _load_api(self) -> Any:
        from appliance.runtime.neuron.sdk import load_nxdi

        return load_nxdi()

    @property
    def model_cls(self) -> Any:
        """NxD Inference's class for the family, or with kernels the appliance's own Llama class whose graph calls
        them (nxdi_llama.py). The emulator reads the kernels from the config (appliance_kernels) instead."""
        base = self.api.model_classes[self.family]
        ops = self.options.kernel_ops
        if not ops or self.api.emulated:
            return base
        if self._kernel_cls is None:
            from appliance.runtime.neuron.nxdi_llama import appliance_llama_class
            from appliance.runtime.neuron.sdk import load_nxdi_kernel_api

            self._kernel_cls = appliance_llama_class(load_nxdi_kernel_api(), ops)
        return self._kernel_cls

    def inference_config(self, model_dir: str | Path, artifact_dir: str | Path | None = None) -> Any:
        kwargs = neuron_config_kwargs(self.options, artifact_dir)
        ods = kwargs.pop("on_device_sampling_config", None)
        if ods is not None:
            kwargs["on_device_sampling_config"] = self.api.OnDeviceSamplingConfig(**ods)
        neuron_config = self.api.NeuronConfig(**kwargs)
        config = self.model_cls.get_config_cls()(
            neuron_config, load_config=self.api.load_pretrained_config(str(model_dir))
        )
        if self.options.kernel_ops:
            from appliance.runtime.neuron.nxdi_llama import check_config

            check_config(config, self.options.kernel_ops)
        return config

    def compile(self, model_dir: str | Path, artifact_dir: str | Path) -> None:
        """Trace and compile to `artifact_dir` (neuron_config.json, model.pt, weights/tp<rank>_sharded_checkpoint,
        and neffs/<submodel>/bk<i>.neff for profiling).

        NxD's ModelBuilder compiles in BASE_COMPILE_WORK_DIR (default /tmp/nxd_model/, which it deletes first, so two
        compiles sharing it clobber each other: application_base.get_builder, neuronx_distributed
        trace/model_builder.py) and embeds the NEFFs in model.pt; each compile gets a work directory of its own,
        and the per-bucket graph.neff files are kept, since neuron-profile needs a NEFF file."""
        import os
        import shutil

        artifact_dir = Path(artifact_dir)
        workdir = artifact_dir.parent / f".{artifact_dir.name}.compiler-workdir"
        config = self.inference_config(model_dir, artifact_dir)
        if self.options.quantization == "int8":
            (artifact_dir / "quantized").mkdir(parents=True, exist_ok=True)
            self.model_cls.save_quantized_state_dict(str(model_dir), config)
        previous = os.environ.get(WORKDIR_ENV)
        os.environ[WORKDIR_ENV] = f"{workdir}/"
        try:
            self.model_cls(str(model_dir), config).compile(str(artifact_dir))
            for neff in sorted(workdir.glob("*/_tp0_bk*/graph.neff")):
                bucket = neff.parent.name.removeprefix("_tp0_")  # "bk<i>"
                target = artifact_dir / "neffs" / neff.parent.parent.name / f"{bucket}.neff"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(neff, target)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if previous is None:
                os.environ.pop(WORKDIR_ENV, None)
            else:
                os.environ[WORKDIR_ENV] = previous

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

    def _slot(self, step: SeqStep, pos: int) -> int:
        bs = self.options.block_size
        return step.block_table[pos // bs] * bs + pos % bs

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
        long = dict(dtype=torch.long)
        kwargs: dict[str, Any] = dict(seq_ids=torch.tensor([step.slot], **long), sampling_params=self._sampling([step]))
        if self.options.block_layout:
            computed = (step.start_pos // self.options.block_size) * self.options.block_size
            kwargs.update(
                input_ids=torch.tensor([tokens], **long),
                position_ids=torch.tensor([list(range(n))], **long),
                slot_mapping=torch.tensor([[self._slot(step, p) for p in range(computed, n)]], **long),
                block_table=torch.tensor([list(step.block_table)], **long),
                full_context_lens=torch.tensor([[n]], **long),
                computed_context_lens=torch.tensor([[computed]], **long),
            )
        else:
            width = n if n > 1 else self.options.buckets.context_lengths[-1]
            kwargs.update(
                input_ids=torch.tensor([pad_row(tokens, width, 0)], **long),
                position_ids=torch.tensor([pad_row(list(range(n)), width, 0)], **long),
                attention_mask=torch.tensor([pad_row([1] * n, width, 0)], **long),
            )
        return BackendCall("prefill", [step.seq_id], kwargs)

    def decode_call(self, steps: list[SeqStep]) -> BackendCall:
        import torch

        if not self.options.block_layout:
            steps = sorted(steps, key=lambda s: s.slot)  # cache line order: a full batch is not reordered
        long = dict(dtype=torch.long)
        kwargs: dict[str, Any] = dict(
            input_ids=torch.tensor([[s.token_ids[0]] for s in steps], **long),
            position_ids=torch.tensor([[s.start_pos] for s in steps], **long),
            seq_ids=torch.tensor([s.slot for s in steps], **long),
            sampling_params=self._sampling(steps),
        )
        if self.options.block_layout:
            width = max(len(s.block_table) for s in steps)
            kwargs.update(
                slot_mapping=torch.tensor([[self._slot(s, s.start_pos)] for s in steps], **long),
                block_table=torch.tensor([pad_row(list(s.block_table), width, BLOCK_TABLE_PAD) for s in steps], **long),
                full_context_lens=torch.tensor([[s.end_pos] for s in steps], **long),
                computed_context_lens=torch.tensor([[s.start_pos] for s in steps], **long),
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
            if self.vocab_size:
                logits = logits[:, : self.vocab_size]  # lm_head pads the vocabulary to a multiple of tp_degree
        if tokens is not None:
            tokens = tokens.reshape(tokens.shape[0], -1)[:rows, -1]
        return StepOutput(call.seq_ids, logits=logits, tokens=tokens)
