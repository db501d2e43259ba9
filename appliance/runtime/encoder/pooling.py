"""How an encoder's token states become one vector, as its sentence-transformers configuration says.

modules.json lists the modules (Transformer, Pooling, Normalize); the Pooling module's config.json names the mode.
A checkpoint without modules.json gets what sentence-transformers gives a plain Hugging Face model: mean pooling,
no normalisation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

MODES = ("cls", "mean", "max", "mean_sqrt_len", "lasttoken")
_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None  # sentence_bert_config.json: longer inputs are refused

    @classmethod
    def from_dir(cls, root: str | Path) -> "PoolingConfig":
        """Read the sentence-transformers files of a checkpoint; ValueError names what is not supported."""
        root = Path(root)
        max_len = _read(root / "sentence_bert_config.json").get("max_seq_length")
        max_len = max_len if isinstance(max_len, int) and max_len > 0 else None
        modules_path = root / "modules.json"
        if not modules_path.is_file():
            return cls("mean", False, max_len)
        modules = json.loads(modules_path.read_text())
        mode, normalize = "mean", False
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind not in _KNOWN_MODULES:
                raise ValueError(f"{modules_path}: sentence-transformers module {module.get('type')!r} is not "
                                 f"supported (only {', '.join(_KNOWN_MODULES)})")
            if kind == "Pooling":
                mode = _mode(_read(root / module.get("path", "") / "config.json"), root)
            elif kind == "Normalize":
                normalize = True
        return cls(mode, normalize, max_len)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _mode(config: dict, root: Path) -> str:
    chosen = [m for m in MODES if config.get(f"pooling_mode_{m}_token" if m in ("cls", "lasttoken") else
                                             f"pooling_mode_{m}_tokens")]
    chosen += [m for m in ("weightedmean",) if config.get("pooling_mode_weightedmean_tokens")]
    if len(chosen) != 1 or chosen[0] not in MODES:
        raise ValueError(f"{root}: pooling {chosen or 'none'} is not supported (one of {', '.join(MODES)})")
    return chosen[0]


def pool(states: torch.Tensor, mask: torch.Tensor, config: PoolingConfig) -> torch.Tensor:
    """(batch, seq, hidden) token states and the (batch, seq) attention mask -> (batch, hidden) vectors."""
    m = mask.unsqueeze(-1).to(states.dtype)
    lengths = m.sum(1).clamp(min=1e-9)
    if config.mode == "cls":
        out = states[:, 0]
    elif config.mode == "max":
        out = states.masked_fill(m == 0, torch.finfo(states.dtype).min).max(1).values
    elif config.mode == "lasttoken":
        last = mask.sum(1).long() - 1
        out = states[torch.arange(states.shape[0]), last]
    else:
        out = (states * m).sum(1) / (lengths if config.mode == "mean" else lengths.sqrt())
    if config.normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=1)
    return out
