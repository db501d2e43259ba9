"""PyTorch reference for the SwiGLU MLP (Llama's gate/up/down projections, Hugging Face Linear [out, in] layout)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_mlp(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """x [T, H], w_gate/w_up [I, H], w_down [H, I] -> down(silu(x @ w_gate.T) * (x @ w_up.T)) [T, H]."""
    hidden, inter = x.shape[-1], w_gate.shape[0]
    if w_gate.shape != (inter, hidden) or w_up.shape != (inter, hidden) or w_down.shape != (hidden, inter):
        raise ValueError(
            f"swiglu_mlp: need w_gate/w_up [I, H] and w_down [H, I] for H={hidden}; got w_gate {list(w_gate.shape)}, "
            f"w_up {list(w_up.shape)}, w_down {list(w_down.shape)}"
        )
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
