"""The one dispatch layer for the model's hot operations.

These are the implementations used on the CPU and CUDA: rms_norm, rotary_embedding and swiglu_mlp are the PyTorch
references beside the NKI kernels; paged_decode_attention runs the C++ extension on the CPU (appliance/runtime/csrc/,
reads the blocks in place; see cpu_extension.py) when it is built and not switched off, else the PyTorch path
`torch_paged_decode_attention`, which gathers through the block table into reused buffers and makes one SDPA call
(faster on the CPU than the NKI reference's einsum form; checked against it numerically). The Neuron executor routes the same names, with the same signatures, to NKI kernels (nki_kernels/); model code calls
only these functions.
Shapes: T tokens, H hidden, I intermediate, Hq/Hkv query/key-value heads, D head_dim, B sequences.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from appliance.runtime import cpu_extension

# The PyTorch references of these three live beside their NKI kernels; the engine uses them as they are.
from nki_kernels.rms_norm.reference import rms_norm  # noqa: E402,F401
from nki_kernels.rotary_embedding.reference import rotary_embedding  # noqa: E402,F401
from nki_kernels.swiglu_mlp.reference import swiglu_mlp  # noqa: E402,F401


class _Scratch(threading.local):
    """Reused gather buffers, per thread: a fresh multi-megabyte tensor per call costs page faults that dwarf the
    copy itself."""

    def __init__(self) -> None:
        self.buffers: dict[tuple, torch.Tensor] = {}

    def take(self, slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (slot, like.dtype, like.device, torch.is_inference_mode_enabled())  # an inference tensor cannot be
        # written outside inference mode, so a buffer made inside one is not reused outside it
        numel = 1
        for n in shape:
            numel *= n
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)


_scratch = _Scratch()


def gather_blocks(cache: torch.Tensor, block_ids: torch.Tensor, slot: int) -> torch.Tensor:
    """cache[num_blocks, block_size, Hkv, D] rows ``block_ids`` (long [n]) -> [n * block_size, Hkv, D], in a reused
    buffer (``slot`` tells apart buffers alive at the same time; the result is valid until the next call)."""
    num_blocks, block_size, hkv, d = cache.shape
    out = _scratch.take(slot, (block_ids.numel(), block_size * hkv * d), cache)
    torch.index_select(cache.view(num_blocks, -1), 0, block_ids, out=out)
    return out.view(-1, hkv, d)


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One query token per sequence against its cached keys/values, read through its block table.

    q[B,Hq,D]; k_cache/v_cache[num_blocks, block_size, Hkv, D]; block_tables int32[B, max_blocks] (entries past a
    sequence's blocks are ignored); context_lens int32[B] (tokens in the cache, this step's token included) ->
    [B,Hq,D]. The C++ extension on the CPU for float32/bfloat16 when it is loaded, else the PyTorch path.
    """
    if q.device.type == "cpu" and q.dtype in cpu_extension.DTYPES and k_cache.dtype == q.dtype:
        ext = cpu_extension.ops()
        if ext is not None:
            return ext.paged_decode_attention(q, k_cache, v_cache, block_tables.to(torch.int32),
                                              context_lens.to(torch.int32), float(scale))
    return torch_paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale)


def cpu_rotary_write_kv(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin_signed: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    q_heads: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The CPU extension's one pass over a step's qkv [T, (Hq + 2 Hkv) * D] (float32): rotary embedding of the query
    and key heads with the reference's bits (cos, sin_signed [T, D] as model/llama.py's rotate_qk takes them), K and V
    written into the caches at slot_mapping; returns (q [T,Hq,D], k [T,Hkv,D]). None where the extension cannot run
    it (not loaded, not float32, not the CPU): the caller does the same in PyTorch operations."""
    if qkv.device.type != "cpu" or qkv.dtype != torch.float32 or k_cache.dtype != torch.float32:
        return None
    ext = cpu_extension.ops()
    if ext is None:
        return None
    q, k = ext.rotary_write_kv(qkv, cos, sin_signed, slot_mapping, k_cache, v_cache, q_heads)
    return q, k  # a tuple, as callers unpack it (pybind gives a list)


def torch_paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """paged_decode_attention's PyTorch path (same contract): gather the blocks into reused buffers, one SDPA call."""
    b, hq, d = q.shape
    num_blocks, block_size, hkv, _ = k_cache.shape
    flat = block_tables.reshape(-1).long()
    k = gather_blocks(k_cache, flat, 0).view(b, -1, hkv, d)
    v = gather_blocks(v_cache, flat, 1).view(b, -1, hkv, d)
    valid = torch.arange(k.shape[1], device=q.device)[None, :] < context_lens[:, None]
    # The query heads sharing a KV head act as that head's "query positions": one SDPA call, no repeat of K/V.
    out = F.scaled_dot_product_attention(
        q.view(b, hkv, hq // hkv, d), k.transpose(1, 2), v.transpose(1, 2), attn_mask=valid[:, None, None, :],
        scale=scale,
    )
    return out.reshape(b, hq, d)


OPERATIONS = ("rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention")
REFERENCES = {name: globals()[name] for name in OPERATIONS}


def use_implementations(table: dict | None = None) -> None:
    """Route the operations named in `table` to other implementations with the same signatures (the Neuron executor
    installs the NKI kernels this way when the compile job enabled kernels); None restores the PyTorch references.
    Model code looks the functions up on this module at call time, so the switch applies to the whole process."""
    table = dict(table or {})
    unknown = sorted(set(table) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"unknown kernel operation {unknown[0]!r}; known: {', '.join(OPERATIONS)}")
    for name in OPERATIONS:
        globals()[name] = table.get(name, REFERENCES[name])
