"""EMULATOR (test double) of NxD Inference 0.8's causal-LM application: NeuronLlamaForCausalLM and
NeuronQwen2ForCausalLM with ``compile()``, ``load()`` and ``forward()`` (``models/application_base.py``,
``models/model_base.py``, ``models/model_wrapper.py`` at the Neuron SDK 2.28.0 release).

* ``compile(path)`` writes the artifact layout the SDK writes: ``neuron_config.json``, ``model.pt`` (here a labelled
  description of the graphs, one per bucket, instead of NEFFs) and, with ``save_sharded_checkpoint``,
  ``weights/tp<rank>_sharded_checkpoint.safetensors`` holding each rank's slice of the weights.
* ``load(path)`` reads only the artifact (the pre-sharded weights, reassembled), checks the NeuronCores this process
  may see against the ranks, and runs the SDK's warm-up, which writes into block 0 / the first cache lines.
* ``forward(...)`` takes the SDK's arguments and applies its static shapes: routing between the context-encoding and
  token-generation graphs, bucket choice and overflow errors, padding (right padding of tokens with position 1,
  batch padding with the first row and, for the contiguous layout, the unused seq ids), the contiguous layout's
  row <-> cache line rule, slot -1 writes to the reserved block, and logits taken at the maximal position id.

It computes with the project's PyTorch model (graph.py). It is NOT the AWS Neuron SDK: it proves that the appliance
drives NxD Inference's interface consistently with the SDK's source, not that the SDK or the hardware agree.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from appliance.runtime.neuron.emulator import LABEL
from appliance.runtime.neuron.emulator import buckets as bk
from appliance.runtime.neuron.emulator.config import CONFIG_FILE, InferenceConfig
from appliance.runtime.neuron.emulator.graph import attention, run_layers, write

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"  # application_base.COMPILED_MODEL_FILE_NAME
SEQ_IDS_MASK_PAD = 128  # model_wrapper KV_CACHE_PAD_FOR_SEQ_IDS_MASKING
COLUMN_PARALLEL = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # split along the output dimension
ROW_PARALLEL = ("o_proj", "down_proj")  # split along the input dimension


class EmulatedSDKRefusal(RuntimeError):
    """A call the real SDK would accept but compute wrongly, refused loudly instead (the message says why)."""


def _split_dim(name: str) -> int | None:
    if any(f".{p}." in name for p in COLUMN_PARALLEL):
        return 0
    if any(f".{p}." in name for p in ROW_PARALLEL) and name.endswith("weight"):
        return 1
    return None


class NeuronBaseForCausalLM:
    """One compiled causal LM: ``Cls(model_path, config=None)``; config None reads <model_path>/neuron_config.json."""

    family = ""

    def __init__(self, model_path: str, config: InferenceConfig | None = None) -> None:
        self.model_path = str(model_path)
        self.config = config if config is not None else self.get_config_cls().load(model_path)
        self.neuron_config = self.config.neuron_config
        if self.neuron_config.is_chunked_prefill:  # model_base.py l.3096
            raise NotImplementedError("Chunked Prefill is not available in NxDI for now")
        self.model: Any = None
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    @classmethod
    def get_config_cls(cls) -> type:
        return InferenceConfig

    @classmethod
    def save_quantized_state_dict(cls, model_path: str, config: InferenceConfig) -> None:
        """application_base.save_quantized_state_dict: int8 per-channel weights (here: a labelled manifest only)."""
        path = Path(config.neuron_config.quantized_checkpoints_path)
        target = path / "emulator-quantized.json" if path.is_dir() else path
        target.write_text(json.dumps({"emulator": LABEL, "source": str(model_path), "dtype": "int8"}))

    # ---- compile / load ------------------------------------------------------------------------------------------

    def graphs(self) -> dict[str, list]:
        nc = self.neuron_config
        # Building the model shards the MLP with ColumnParallelLinear, whose size per rank is NxD's
        # parallel_layers/utils.divide(): `assert numerator % denominator == 0, "{} is not divisible by {}"`.
        # Attention heads are padded to a multiple of tp_degree instead (modules/attention/gqa.py).
        inter = int(getattr(self.config, "intermediate_size", 0) or 0)
        assert inter % nc.tp_degree == 0, f"{inter} is not divisible by {nc.tp_degree}"
        return {bk.CTE: bk.cte_buckets(nc), bk.TKG: bk.tkg_buckets(nc)}

    def compile(self, compiled_model_path: str) -> None:
        root = Path(compiled_model_path)
        root.mkdir(parents=True, exist_ok=True)
        self.config.save(root)
        graphs = self.graphs()  # raises as the SDK's autobucketing does (e.g. TypeError: no prefix_buckets)
        workdir = Path(os.environ.get("BASE_COMPILE_WORK_DIR", "/tmp/nxd_model/"))
        shutil.rmtree(workdir, ignore_errors=True)  # ModelBuilder.trace empties its work directory first
        for tag, buckets in graphs.items():  # <workdir>/<tag>/_tp0_bk<i>/graph.neff (ModelBuilder.trace)
            for i, bucket in enumerate(buckets):
                neff = workdir / tag / f"_tp0_bk{i}" / "graph.neff"
                neff.parent.mkdir(parents=True, exist_ok=True)
                neff.write_text(f"EMULATOR placeholder, not a NEFF: {tag} bucket {bucket} ({LABEL})\n")
        torch.save({"emulator": LABEL, "graphs": graphs, "family": self.family}, root / MODEL_FILE)
        if self.neuron_config.save_sharded_checkpoint:
            self._shard(root / "weights")
        log.warning("NEURON SDK EMULATOR: compiled %d emulated graphs into %s (%s)",
                    sum(len(v) for v in graphs.values()), root, LABEL)

    def _shard(self, out: Path) -> None:
        from safetensors.torch import save_file

        from appliance.runtime.model.loader import load_weights

        tp = self.neuron_config.tp_degree
        weights = load_weights(self.config._name_or_path, torch.float32)
        out.mkdir(parents=True, exist_ok=True)
        split = {}
        for rank in range(tp):
            shard = {}
            for name, t in weights.items():
                dim = _split_dim(name)
                if dim is not None and t.shape[dim] % tp == 0:
                    split[name] = dim
                    shard[name] = t.chunk(tp, dim=dim)[rank].contiguous()
                else:
                    shard[name] = t
            save_file(shard, str(out / f"tp{rank}_sharded_checkpoint.safetensors"),
                      metadata={"emulator": LABEL, "split": json.dumps(split)})

    def _unshard(self, root: Path) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        tp = self.neuron_config.tp_degree
        files = [root / "weights" / f"tp{r}_sharded_checkpoint.safetensors" for r in range(tp)]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"Can not find the sharded checkpoint files {missing}")
        parts: dict[str, list[torch.Tensor]] = {}
        split: dict[str, int] = {}
        for f in files:
            with safe_open(str(f), framework="pt") as handle:
                split = json.loads((handle.metadata() or {}).get("split", "{}"))
                for name in handle.keys():
                    parts.setdefault(name, []).append(handle.get_tensor(name))
        return {n: torch.cat(ts, dim=split[n]) if n in split else ts[0] for n, ts in parts.items()}

    def load(self, compiled_model_path: str) -> None:
        from appliance.runtime.model.args import ModelArgs
        from appliance.runtime.model.llama import LlamaForCausalLM

        root = Path(compiled_model_path)
        saved = torch.load(root / MODEL_FILE, weights_only=True)
        if saved.get("emulator") != LABEL:
            raise RuntimeError(f"{root / MODEL_FILE} was not written by this emulator ({LABEL})")
        self._check_cores()
        nc = self.neuron_config
        dtype = getattr(torch, nc.torch_dtype)
        hf = {k: v for k, v in vars(self.config).items() if k != "neuron_config"}
        args = ModelArgs.from_hf(hf)
        weights = {k: v.to(dtype) for k, v in self._unshard(root).items()}
        self.args = args
        self.model = LlamaForCausalLM(args, weights, nc.seq_len + SEQ_IDS_MASK_PAD, "cpu")
        if nc.is_block_kv_layout:
            shape = (nc.pa_num_blocks + 1, nc.pa_block_size, args.num_kv_heads, args.head_dim)
        else:
            extra = SEQ_IDS_MASK_PAD if getattr(nc, "apply_seq_ids_mask", False) else 0
            shape = (nc.kv_cache_batch_size, nc.max_length + extra, args.num_kv_heads, args.head_dim)
        self.kv = [(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)) for _ in range(args.num_layers)]
        for k, v in self.kv:  # application_base.warmup(): every graph once with zero block tables / slots
            k[0].normal_()
            v[0].normal_()
        self.kernel_calls = None
        if nc.appliance_kernels:  # the appliance's model class put these NKI kernels into the graph
            from appliance.runtime import kernels
            from appliance.runtime.neuron.kernel_hook import KernelCallCounter, simulated_kernel_table

            self.kernel_calls = KernelCallCounter()
            kernels.use_implementations(simulated_kernel_table(nc.appliance_kernels, self.kernel_calls))
            log.warning("NEURON SDK EMULATOR: kernels %s run on the NumPy NKI simulator", nc.appliance_kernels)
        log.warning("NEURON SDK EMULATOR: loaded %s onto emulated NeuronCores %s (%s)", root,
                    os.environ.get("NEURON_RT_VISIBLE_CORES", "<all>"), LABEL)

    def _check_cores(self) -> None:
        """The Neuron runtime cannot place tp_degree ranks on fewer visible cores (nrt init fails)."""
        visible = os.environ.get("NEURON_RT_VISIBLE_CORES")
        if visible is None:
            return
        lo, _, hi = visible.partition("-")
        count = int(hi or lo) - int(lo) + 1
        if count < self.neuron_config.tp_degree:
            raise RuntimeError(f"NRT: {count} NeuronCores visible (NEURON_RT_VISIBLE_CORES={visible}) for "
                               f"tp_degree={self.neuron_config.tp_degree} ranks")

    # ---- forward -------------------------------------------------------------------------------------------------

    def __call__(self, **kwargs: Any) -> Any:
        return self.forward(**kwargs)

    def forward(self, input_ids: torch.Tensor, seq_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                sampling_params: torch.Tensor | None = None, slot_mapping: torch.Tensor | None = None,
                block_table: torch.Tensor | None = None, full_context_lens: torch.Tensor | None = None,
                computed_context_lens: torch.Tensor | None = None, **_: Any) -> Any:
        if self.model is None:
            raise RuntimeError("forward before load()")
        assert position_ids is not None or attention_mask is not None, (
            "need to call forward with position_ids if attention_mask is not provided")
        if seq_ids is None:
            seq_ids = torch.arange(input_ids.shape[0])
        nc = self.neuron_config
        with torch.inference_mode():
            if nc.is_block_kv_layout:
                for name, t in (("full_context_lens", full_context_lens), ("computed_context_lens",
                                                                          computed_context_lens)):
                    if t is None or t.dim() != 2:  # model_base._get_model_outputs: num_queries.shape unpacks to 2
                        raise ValueError(f"{name} must be a 2-D [batch, 1] tensor with the block KV layout")
                is_cte = input_ids.shape[-1] > 1 and int(position_ids.min()) == 0  # model_base l.3616
                if is_cte:
                    rows = [self._block_cte(input_ids[i], position_ids[i], slot_mapping[i], block_table[i],
                                            int(full_context_lens[i, 0]), int(computed_context_lens[i, 0]))
                            for i in range(input_ids.shape[0])]
                    logits = torch.stack(rows)
                else:
                    logits = self._block_tkg(input_ids, position_ids, slot_mapping, block_table,
                                             computed_context_lens)
            elif int(position_ids.min()) == 0:  # _is_prefill, model_base l.3591
                assert seq_ids.dim() == 1 and seq_ids.shape[0] == 1, "only supports single seq_id"
                logits = self._contiguous_cte(input_ids[0], position_ids[0], attention_mask, int(seq_ids[0]))[None]
            else:
                logits = self._contiguous_tkg(input_ids, position_ids, seq_ids)
        logits = logits[:, None, :].float()
        return SimpleNamespace(logits=logits, tokens=logits, hidden_states=logits)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.compute_logits(hidden)

    def _block_cte(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, table: torch.Tensor,
                   full: int, computed: int) -> torch.Tensor:
        nc = self.neuron_config
        if ids.shape[0] != full:
            raise ValueError(f"input_ids hold {ids.shape[0]} tokens but full_context_lens is {full}")
        new = full - computed
        prefill, prefix_bucket = bk.prefix_caching_cte_bucket(bk.cte_buckets(nc), new, computed,
                                                              nc.allow_input_truncation)
        adjusted = max(0, computed - max(0, prefill - new))
        if prefix_bucket and not (nc.attn_kernel_enabled is True and prefill >= 512):
            raise EmulatedSDKRefusal(
                f"EMULATOR: a context encoding with a {adjusted}-token cached prefix on a LNC1 NeuronCore (inf2/trn1) "
                "runs NxD Inference 0.8's non-kernel prefix attention, which does not mask the prior scores "
                "(modules/attention/attention_base.py, perform_prefix_prefill); the flash-attention kernel that masks "
                f"them needs attn_kernel_enabled=True and a prefill bucket >= 512 (got {nc.attn_kernel_enabled}, "
                f"{prefill}). On hardware this call would return wrong tokens")
        # _pad_prefix_caching_inputs (model_wrapper l.1102-1128): the prefix tokens moved into the empty prefill
        # slots are recomputed; their slots are -1 (not rewritten); everything is padded to the prefill bucket.
        active = ids[adjusted:]
        positions = pos[adjusted:]
        slot_row = [-1] * (computed - adjusted) + [int(s) for s in slots.reshape(-1)]
        n = active.shape[0]
        if len(slot_row) > prefill or n > prefill:
            raise ValueError(f"slot_mapping of {slots.numel()} entries does not fit the traced input shape "
                             f"[1, {prefill}]; it must hold the {new} uncached tokens' slots")
        slot_row += [-1] * (prefill - len(slot_row))
        pad_id = getattr(self.config, "pad_token_id", None) or 0
        tokens = torch.cat([active, torch.full((prefill - n,), pad_id, dtype=active.dtype)])
        positions = torch.cat([positions, torch.ones(prefill - n, dtype=positions.dtype)])
        bs = nc.pa_block_size
        width = prefix_bucket // bs
        blocks = [int(b) for b in table.reshape(-1)[:width]] + [0] * max(0, width - table.numel())
        prior_slots = torch.tensor([blocks[p // bs] * bs + p % bs for p in range(adjusted)], dtype=torch.long)
        write_slots = self._redirect(torch.tensor(slot_row, dtype=torch.long))
        key_ok = torch.arange(prefill) < n
        visible = torch.cat([torch.ones(prefill, adjusted, dtype=torch.bool),
                             torch.tril(torch.ones(prefill, prefill, dtype=torch.bool)) & key_ok[None, :]], dim=1)

        def attend(layer: int, q, k, v):
            kc, vc = self.kv[layer]
            keys = torch.cat([kc.view(-1, *kc.shape[2:])[prior_slots], k])
            values = torch.cat([vc.view(-1, *vc.shape[2:])[prior_slots], v])
            write(kc, write_slots, k)
            write(vc, write_slots, v)
            return attention(q, keys, values, visible, self.model.scale)

        hidden = run_layers(self.model, tokens.long(), positions.long(), attend)
        return self._logits(hidden[int(torch.argmax(positions))][None])[0]

    def _redirect(self, slots: torch.Tensor) -> torch.Tensor:
        """Slot -1 -> the first slot of the reserved last block (block_kv_cache_manager._update_cache_with_reshape)."""
        reserved = self.neuron_config.pa_num_blocks * self.neuron_config.pa_block_size
        return torch.where(slots < 0, torch.full_like(slots, reserved), slots)

    def _block_tkg(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, table: torch.Tensor,
                   computed: torch.Tensor) -> torch.Tensor:
        from appliance.runtime import kernels

        nc = self.neuron_config
        rows = ids.shape[0]
        if rows > nc.tkg_batch_size:
            raise ValueError(f"batch of {rows} exceeds the compiled token-generation batch {nc.tkg_batch_size}")
        prefix_bucket = bk.prefix_caching_tkg_bucket(bk.tkg_buckets(nc), int(computed.max()),
                                                     nc.allow_input_truncation)
        bs = nc.pa_block_size
        width = prefix_bucket // bs
        table = table.reshape(rows, -1)[:, :width]
        if table.shape[1] < width:
            table = torch.cat([table, torch.zeros(rows, width - table.shape[1], dtype=table.dtype)], dim=1)
        p = pos.reshape(-1).long()
        if int((p // bs).max()) >= width:
            raise IndexError(f"position {int(p.max())} is past the block table's {width} blocks")
        # model_base l.805-814: the slot is regenerated from the block table; the passed slot only says "write"
        regenerated = table.long()[torch.arange(rows), p // bs] * bs + p % bs
        write_slots = self._redirect(torch.where(slots.reshape(-1) < 0, slots.reshape(-1).long(), regenerated))
        context = (p + 1).to(torch.int32)

        def attend(layer: int, q, k, v):
            kc, vc = self.kv[layer]
            write(kc, write_slots, k)
            write(vc, write_slots, v)
            return kernels.paged_decode_attention(q, kc, vc, table.to(torch.int32), context, self.model.scale)

        hidden = run_layers(self.model, ids.reshape(-1).long(), p, attend)
        return self._logits(hidden)

    def _contiguous_cte(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, line: int
                        ) -> torch.Tensor:
        nc = self.neuron_config
        if mask is None:  # model_base._infer_attention_mask
            mask = (pos[None] >= torch.arange(pos.shape[0])[None]).long() if ids.shape[0] > 1 else \
                torch.ones(1, int(pos.max()), dtype=torch.long)
        n = mask.shape[-1]
        if n > nc.max_context_length and not nc.allow_input_truncation:
            raise ValueError(f"Inputs supplied ({n} tokens) are longer than max_context_length "
                             f"({nc.max_context_length} tokens). To truncate inputs, set allow_input_truncation=True.")
        bucket = bk.seq_bucket(bk.cte_buckets(nc), n, bk.CTE, nc.allow_input_truncation)
        pad = bucket - ids.shape[0]
        pad_id = getattr(self.config, "pad_token_id", None) or 0
        tokens = torch.cat([ids, torch.full((pad,), pad_id, dtype=ids.dtype)]).long()
        positions = torch.cat([pos, torch.ones(pad, dtype=pos.dtype)]).long()
        key_ok = torch.cat([mask.reshape(-1).bool(), torch.zeros(bucket - mask.shape[-1], dtype=torch.bool)])
        visible = torch.tril(torch.ones(bucket, bucket, dtype=torch.bool)) & key_ok[None, :]
        # update_cache_const_indices: the whole bucket lands in positions 0..bucket-1 of the sequence's line
        slots = line * self.kv[0][0].shape[1] + torch.arange(bucket)

        def attend(layer: int, q, k, v):
            kc, vc = self.kv[layer]
            write(kc, slots, k)
            write(vc, slots, v)
            return attention(q, k, v, visible, self.model.scale)

        hidden = run_layers(self.model, tokens, positions, attend)
        return self._logits(hidden[int(torch.argmax(positions))][None])[0]

    def _contiguous_tkg(self, ids: torch.Tensor, pos: torch.Tensor, seq_ids: torch.Tensor) -> torch.Tensor:
        nc = self.neuron_config
        batch = nc.tkg_batch_size
        rows = ids.shape[0]
        bucket = bk.seq_bucket(bk.tkg_buckets(nc), int(pos.max()), bk.TKG, nc.allow_input_truncation)
        if bucket > nc.max_length:
            raise ValueError(f"Attention mask supplied (length={bucket}) is longer than max_length {nc.max_length}")
        masked = getattr(nc, "apply_seq_ids_mask", False)
        order = None
        real = [True] * rows
        if rows < batch:  # _forward_with_pad (model_wrapper l.569-647)
            listed = [int(s) for s in seq_ids]
            padded = listed + [x for x in range(batch) if x not in listed]
            order = sorted(range(batch), key=lambda j: padded[j])
            pick = [j if j < rows else 0 for j in order]  # padded rows repeat the first row
            real = [j < rows for j in order]
            ids, pos = ids[pick], pos[pick]
        elif rows > batch:
            raise ValueError(f"batch of {rows} exceeds the compiled token-generation batch {batch}")
        p = pos.reshape(-1).long()
        line_len = self.kv[0][0].shape[1]
        # kv_cache_manager.update_kv_by_layer_id: row i writes line i at its position (seq_ids are not read);
        # with apply_seq_ids_mask a padded row writes to the pad zone past max_length instead
        write_pos = torch.tensor([int(p[i]) if real[i] or not masked else nc.max_length for i in range(batch)])
        slots = torch.arange(batch) * line_len + write_pos

        def attend(layer: int, q, k, v):
            kc, vc = self.kv[layer]
            write(kc, slots, k)
            write(vc, slots, v)
            out = torch.empty_like(q)
            for i in range(batch):
                n = int(p[i]) + 1
                keys, values = kc[i, :n], vc[i, :n]
                out[i] = attention(q[i][None], keys, values, torch.ones(1, n, dtype=torch.bool), self.model.scale)[0]
            return out

        hidden = run_layers(self.model, ids.reshape(-1).long(), p, attend)
        logits = self._logits(hidden)
        if order is None:
            return logits
        position_of = {j: i for i, j in enumerate(order)}  # index_select(logits, 0, seq_ids) in caller's order
        return logits[[position_of[j] for j in range(rows)]]


class NeuronLlamaForCausalLM(NeuronBaseForCausalLM):
    family = "llama"


class NeuronQwen2ForCausalLM(NeuronBaseForCausalLM):
    family = "qwen2"


def describe(path: str | Path) -> dict[str, Any]:
    """The emulated graphs of an artifact (for reports and tests)."""
    return torch.load(Path(path) / MODEL_FILE, weights_only=True)


def config_file(path: str | Path) -> Path:
    return Path(path) / CONFIG_FILE
