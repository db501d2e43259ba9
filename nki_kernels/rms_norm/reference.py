"""PyTorch reference for RMSNorm (the Llama convention: normalize in float32, cast back, then scale)."""
from __future__ import annotations

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [T, H], weight [H] -> [T, H] (in x's dtype when weight shares it, as in the model)."""
    if x.dim() != 2 or weight.shape != (x.shape[-1],):
        raise ValueError(
            f"rms_norm: x must be [T, H] and weight [H]; got x {list(x.shape)}, weight {list(weight.shape)}"
        )
    hidden = x.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + eps)
    return weight * hidden.to(x.dtype)
