"""An encoder checkpoint loaded for embedding: tokenizer, transformers' AutoModel, pooling, optional truncation.

Why transformers' AutoModel rather than the engine's own model code: an encoder runs one forward per batch with no
KV cache, so the paged-cache machinery brings nothing, and the BERT family's variants (RoBERTa's position offset,
DistilBERT's missing token types) are kept correct by transformers in both supported lines (4.57 and 5.x).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .pooling import PoolingConfig, pool

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class EmbedError(ValueError):
    """A request the model cannot serve; `param` names the field, `code` the OpenAI error code if any."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class EncoderInfo:
    dimensions: int  # the model's own embedding size
    max_input_tokens: int
    matryoshka: bool  # the checkpoint declares matryoshka_dimensions: truncation keeps quality
    vocab_size: int


class EncoderModel:
    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> None:
        from transformers import AutoModel, AutoTokenizer

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        root = Path(model_dir)
        config = json.loads((root / "config.json").read_text())
        self.pooling = PoolingConfig.from_dir(root)
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(root))
        self.model = AutoModel.from_pretrained(str(root)).to(self.device, DTYPES[dtype]).eval()
        self.takes_token_types = "token_type_ids" in self.tokenizer.model_input_names
        positions = int(config.get("max_position_embeddings") or 512)
        if config.get("model_type") in ("roberta", "xlm-roberta"):
            positions -= int(config.get("pad_token_id") or 1) + 1  # their position ids start after the pad id
        max_input = min(positions, self.pooling.max_seq_length or positions)
        self.info = EncoderInfo(int(config["hidden_size"]), max_input, bool(config.get("matryoshka_dimensions")),
                                int(config["vocab_size"]))

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True).input_ids)

    def check(self, ids: list[int], index: int) -> None:
        """EmbedError for an input the model cannot take (too long, unknown token ids)."""
        if not ids:
            raise EmbedError(f"input[{index}] is empty", "input")
        if len(ids) > self.info.max_input_tokens:
            raise EmbedError(f"input[{index}] has {len(ids)} tokens; this model's maximum input length is "
                             f"{self.info.max_input_tokens} tokens. Shorten the input.", "input",
                             "context_length_exceeded")
        bad = next((t for t in ids if not 0 <= t < self.info.vocab_size), None)
        if bad is not None:
            raise EmbedError(f"input[{index}] has token id {bad}, outside this model's vocabulary "
                             f"(0..{self.info.vocab_size - 1})", "input")

    def check_dimensions(self, dimensions: int | None) -> None:
        native = self.info.dimensions
        if dimensions is None or dimensions == native:
            return
        if not self.info.matryoshka:
            raise EmbedError(f"this model does not support 'dimensions' other than its own {native}: it was not "
                             f"trained for truncated (Matryoshka) embeddings, so shorter vectors would lose quality. "
                             f"Omit 'dimensions'.", "dimensions")
        if not 1 <= dimensions <= native:
            raise EmbedError(f"'dimensions' must be between 1 and {native} for this model, got {dimensions}",
                             "dimensions")

    @torch.inference_mode()
    def embed(self, batch: list[list[int]], dimensions: list[int | None] | None = None) -> list[np.ndarray]:
        """One forward over the batch (right-padded): one float32 vector per input, truncated to its requested
        dimensions and renormalised where asked."""
        longest = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, :len(ids)] = 1
        inputs: dict[str, Any] = {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self.takes_token_types:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        states = self.model(**inputs).last_hidden_state
        vectors = pool(states.float(), inputs["attention_mask"], self.pooling).cpu()
        out = []
        for i, vec in enumerate(vectors):
            dim = (dimensions or [None] * len(batch))[i]
            if dim is not None and dim != vec.shape[0]:
                vec = torch.nn.functional.normalize(vec[:dim], p=2, dim=0)
            out.append(vec.numpy().astype(np.float32, copy=False))
        return out
