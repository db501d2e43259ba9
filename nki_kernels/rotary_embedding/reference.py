"""PyTorch reference for rotary position embedding (Hugging Face rotate_half convention)."""
from __future__ import annotations

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, D], k [T, Hkv, D], cos/sin [T, D] -> (q, k) rotated: x * cos + rotate_half(x) * sin."""
    if q.dim() != 3 or k.dim() != 3 or cos.shape != (q.shape[0], q.shape[2]) or sin.shape != cos.shape:
        raise ValueError(
            f"rotary_embedding: need q [T, Hq, D], k [T, Hkv, D], cos/sin [T, D]; got q {list(q.shape)}, "
            f"k {list(k.shape)}, cos {list(cos.shape)}, sin {list(sin.shape)}"
        )
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * c) + (_rotate_half(q) * s), (k * c) + (_rotate_half(k) * s)
