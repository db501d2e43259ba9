"""The Llama-family decoder (Llama, Llama 3, Mistral, Qwen2) over a paged KV cache.

Weights are plain tensors taken from a Hugging Face state dict; the hot operations go through
``appliance.runtime.kernels``. q/k/v projections are fused into one matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from appliance.runtime import kernels
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, paged_attention
from appliance.runtime.model.rope import cos_sin_table


class LlamaLayer:
    def __init__(self, args: ModelArgs, w: dict[str, torch.Tensor], prefix: str) -> None:
        a = prefix + "self_attn."
        self.input_norm = w[prefix + "input_layernorm.weight"]
        self.post_norm = w[prefix + "post_attention_layernorm.weight"]
        self.w_qkv = torch.cat([w[a + "q_proj.weight"], w[a + "k_proj.weight"], w[a + "v_proj.weight"]])
        self.b_qkv = (
            torch.cat([w[a + "q_proj.bias"], w[a + "k_proj.bias"], w[a + "v_proj.bias"]]) if args.qkv_bias else None
        )
        self.w_o = w[a + "o_proj.weight"]
        m = prefix + "mlp."
        self.w_gate, self.w_up, self.w_down = w[m + "gate_proj.weight"], w[m + "up_proj.weight"], w[m + "down_proj.weight"]


class LlamaForCausalLM:
    def __init__(self, args: ModelArgs, weights: dict[str, torch.Tensor], max_len: int, device: str) -> None:
        self.args = args
        self.embed = weights["model.embed_tokens.weight"]
        self.layers = [LlamaLayer(args, weights, f"model.layers.{i}.") for i in range(args.num_layers)]
        self.norm = weights["model.norm.weight"]
        self.lm_head = weights.get("lm_head.weight", self.embed) if not args.tie_word_embeddings else self.embed
        self.dtype = self.embed.dtype
        cos, sin = cos_sin_table(args.head_dim, args.rope_theta, args.rope_scaling, max_len)
        self.cos, self.sin = cos.to(device=device, dtype=self.dtype), sin.to(device=device, dtype=self.dtype)
        self.scale = args.head_dim**-0.5
        self.q_size = args.num_heads * args.head_dim
        self.kv_size = args.num_kv_heads * args.head_dim

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """input_ids/positions long [T] -> final hidden states [T,H] (before the last norm)."""
        a = self.args
        t = input_ids.shape[0]
        h = F.embedding(input_ids, self.embed)
        cos, sin = self.cos[positions], self.sin[positions]
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches):
            x = kernels.rms_norm(h, layer.input_norm, a.rms_norm_eps)
            qkv = F.linear(x, layer.w_qkv, layer.b_qkv)
            q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
            q = q.view(t, a.num_heads, a.head_dim)
            k = k.view(t, a.num_kv_heads, a.head_dim)
            v = v.view(t, a.num_kv_heads, a.head_dim)
            q, k = kernels.rotary_embedding(q, k, cos, sin)
            o = paged_attention(q, k, v, k_cache, v_cache, meta, self.scale)
            h = h + F.linear(o.view(t, self.q_size), layer.w_o)
            x = kernels.rms_norm(h, layer.post_norm, a.rms_norm_eps)
            h = h + kernels.swiglu_mlp(x, layer.w_gate, layer.w_up, layer.w_down)
        return h

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [N,H] of the tokens that need logits -> float32 logits [N,V]."""
        return F.linear(kernels.rms_norm(hidden, self.norm, self.args.rms_norm_eps), self.lm_head).float()
