"""The Llama-family decoder (Llama, Llama 3, Mistral, Qwen2) over a paged KV cache.

Weights come from a Hugging Face state dict; q/k/v projections are fused into one matrix. The linear layers are
``model/linear.py``'s: with ``pack_weights`` (the CPU executor) their weights are packed once for oneDNN, and the
MLP runs as three GEMMs with SiLU, the gate·up product and the residual sum fused into their outputs, as does the
output projection's residual sum. The other hot operations go through ``appliance.runtime.kernels``. While the
PyTorch references are installed there, the model runs faster forms that give their results (rotary over q and k
in one pass, bit-identical; torch's fused RMSNorm in float32, bit-identical; the fused MLP above); when another
implementation is installed (the NKI kernels on the simulator or on Neuron), the model calls it, with the plain
weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from appliance.runtime import cpu_extension, kernels
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, paged_attention
from appliance.runtime.model.linear import Linear, make_linear
from appliance.runtime.model.rope import cos_sin_table
from appliance.runtime.stage_clock import NULL_CLOCK, NullClock


def rotate_qk(qk: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of the query and key heads together, qk [T, Hq + Hkv, D]: the reference's
    ``x * cos + rotate_half(x) * sin`` with the same products and sum (so the same bits), in four operations instead
    of ten: ``rotate_half(x) * sin`` is ``halves_swapped(x) * sin_signed`` where sin_signed negates the first half."""
    half = qk.shape[-1] // 2
    swapped = torch.cat((qk[..., half:], qk[..., :half]), dim=-1)
    out = qk * cos[:, None]
    out += swapped.mul_(sin_signed[:, None])
    return out


def rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in float32 as one operation instead of the reference's six: on the CPU the extension's one pass over
    each row (the reference's products in its order; its 16-lane sum of squares may differ from torch's reduction in
    the last bit), else torch's fused RMSNorm (the reference's bits). In 16-bit dtypes both round differently from
    the reference, so this serves float32 only."""
    ext = cpu_extension.ops() if x.device.type == "cpu" else None
    if ext is not None:
        return ext.rms_norm(x, weight, eps)
    return torch.rms_norm(x, (x.shape[-1],), weight, eps)


class LlamaLayer:
    def __init__(self, args: ModelArgs, w: dict[str, torch.Tensor], prefix: str, pack: bool) -> None:
        a = prefix + "self_attn."
        self.input_norm = w[prefix + "input_layernorm.weight"]
        self.post_norm = w[prefix + "post_attention_layernorm.weight"]
        w_qkv = torch.cat([w[a + "q_proj.weight"], w[a + "k_proj.weight"], w[a + "v_proj.weight"]])
        b_qkv = torch.cat([w[a + "q_proj.bias"], w[a + "k_proj.bias"], w[a + "v_proj.bias"]]) if args.qkv_bias else None
        self.qkv: Linear = make_linear(w_qkv, b_qkv, pack)
        self.o: Linear = make_linear(w[a + "o_proj.weight"], None, pack)
        m = prefix + "mlp."
        self.gate: Linear = make_linear(w[m + "gate_proj.weight"], None, pack)
        self.up: Linear = make_linear(w[m + "up_proj.weight"], None, pack)
        self.down: Linear = make_linear(w[m + "down_proj.weight"], None, pack)

    # The plain [out, in] weights, for code that computes with them directly (installed kernels, the emulator).
    @property
    def w_qkv(self) -> torch.Tensor:
        return self.qkv.weight

    @property
    def b_qkv(self) -> torch.Tensor | None:
        return self.qkv.bias

    @property
    def w_o(self) -> torch.Tensor:
        return self.o.weight

    @property
    def w_gate(self) -> torch.Tensor:
        return self.gate.weight

    @property
    def w_up(self) -> torch.Tensor:
        return self.up.weight

    @property
    def w_down(self) -> torch.Tensor:
        return self.down.weight


class LlamaForCausalLM:
    def __init__(self, args: ModelArgs, weights: dict[str, torch.Tensor], max_len: int, device: str,
                 pack_weights: bool = False) -> None:
        self.args = args
        self.embed = weights["model.embed_tokens.weight"]
        self.layers = [LlamaLayer(args, weights, f"model.layers.{i}.", pack_weights) for i in range(args.num_layers)]
        self.norm = weights["model.norm.weight"]
        head = weights.get("lm_head.weight", self.embed) if not args.tie_word_embeddings else self.embed
        self.lm_head: Linear = make_linear(head, None, pack_weights)
        self.dtype = self.embed.dtype
        cos, sin = cos_sin_table(args.head_dim, args.rope_theta, args.rope_scaling, max_len)
        self.cos, self.sin = cos.to(device=device, dtype=self.dtype), sin.to(device=device, dtype=self.dtype)
        half = args.head_dim // 2
        self.sin_signed = torch.cat([-self.sin[:, :half], self.sin[:, half:]], dim=-1)  # rotate_half's sign folded in
        self.scale = args.head_dim**-0.5
        self.q_size = args.num_heads * args.head_dim
        self.kv_size = args.num_kv_heads * args.head_dim

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        clock: NullClock = NULL_CLOCK,
    ) -> torch.Tensor:
        """input_ids/positions long [T] -> final hidden states [T,H] (before the last norm)."""
        a = self.args
        t = input_ids.shape[0]
        h = F.embedding(input_ids, self.embed)
        cos = self.cos[positions]
        fused_rotary = kernels.rotary_embedding is kernels.REFERENCES["rotary_embedding"]
        sin = (self.sin_signed if fused_rotary else self.sin)[positions]
        fused_mlp = kernels.swiglu_mlp is kernels.REFERENCES["swiglu_mlp"]
        norm = self._rms_norm()
        clock.mark("embedding")
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches):
            x = norm(h, layer.input_norm, a.rms_norm_eps)
            clock.mark("rms_norm")
            qkv = layer.qkv(x)
            clock.mark("qkv_proj")
            v = qkv[:, self.q_size + self.kv_size :].view(t, a.num_kv_heads, a.head_dim)
            written = kernels.cpu_rotary_write_kv(qkv, cos, sin, meta.slot_mapping, k_cache, v_cache,
                                                  a.num_heads) if fused_rotary else None
            if written is not None:  # one pass: rotary of q and k, and k, v into the caches
                q, k = written
            elif fused_rotary:
                qk = rotate_qk(qkv[:, : self.q_size + self.kv_size].view(t, -1, a.head_dim), cos, sin)
                q, k = qk[:, : a.num_heads].contiguous(), qk[:, a.num_heads :]  # q as the attention kernels had it
            else:
                q = qkv[:, : self.q_size].view(t, a.num_heads, a.head_dim)
                k = qkv[:, self.q_size : self.q_size + self.kv_size].view(t, a.num_kv_heads, a.head_dim)
                q, k = kernels.rotary_embedding(q, k, cos, sin)
            clock.mark("rotary")
            o = paged_attention(q, k, v, k_cache, v_cache, meta, self.scale, kv_written=written is not None)
            clock.mark("attention")
            h = layer.o.add(o.view(t, self.q_size), h)
            clock.mark("o_proj+residual")
            x = norm(h, layer.post_norm, a.rms_norm_eps)
            clock.mark("rms_norm")
            if fused_mlp:
                y = layer.up.mul(x, layer.gate.silu(x))
                clock.mark("gate_up+silu_mul")
                h = layer.down.add(y, h)
                clock.mark("down_proj+residual")
            else:
                h = h + kernels.swiglu_mlp(x, layer.w_gate, layer.w_up, layer.w_down)
                clock.mark("mlp (installed kernel)")
        return h

    def _rms_norm(self):  # noqa: ANN202
        fast = self.dtype == torch.float32 and kernels.rms_norm is kernels.REFERENCES["rms_norm"]
        return rms_norm_fp32 if fast else kernels.rms_norm

    def compute_logits(self, hidden: torch.Tensor, clock: NullClock = NULL_CLOCK) -> torch.Tensor:
        """Hidden states [N,H] of the tokens that need logits -> float32 logits [N,V]."""
        x = self._rms_norm()(hidden, self.norm, self.args.rms_norm_eps)
        clock.mark("rms_norm")
        logits = self.lm_head(x).float()
        clock.mark("lm_head")
        return logits
