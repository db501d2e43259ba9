"""EMULATOR (test double): ``modules/generation/sampling.py`` of NxD Inference 0.8 (prepare_sampling_params, l.185)."""
from __future__ import annotations

from typing import Any

import torch


def _column(values: Any, batch_size: int) -> torch.Tensor:
    t = torch.as_tensor(values if isinstance(values, (list, tuple)) else [values], dtype=torch.float32).reshape(-1)
    return t.expand(batch_size) if t.numel() == 1 else t


def prepare_sampling_params(batch_size: int, top_k: Any = (1,), top_p: Any = (1.0,), temperature: Any = (1.0,)
                            ) -> torch.Tensor:
    """[batch_size, 3] float32 (top_k, top_p, temperature); single values broadcast."""
    cols = [_column(v, batch_size) for v in (top_k, top_p, temperature)]
    assert cols[0].shape == cols[1].shape == cols[2].shape, (
        f"sampling params shapes don't match. top_k: {cols[0].shape}, top_p: {cols[1].shape}, "
        f"temperature: {cols[2].shape}")
    return torch.stack(cols, dim=1)
