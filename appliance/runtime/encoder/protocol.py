"""The encoder replica's endpoint (beside GET /health and GET /metrics, as every replica serves them):

    POST /embed   body: EmbedRequest as JSON. A request the model cannot take answers HTTP 400 with ErrorBody
                  (``{"error": {...}}``, OpenAI shape, ``param`` naming the field). Otherwise HTTP 200 with
                  EmbedResult: the vectors as one base64 string of little-endian float32, row after row (what
                  OpenAI's ``encoding_format: "base64"`` sends per row), ``count`` rows of ``dimensions`` values.

POST /generate on an encoder replica answers 400 (it serves no generation); POST /session answers 404.
"""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


@dataclass
class EmbedRequest:
    request_id: str
    input: list[str | list[int]]  # texts (tokenized by the replica) or token-id lists (used as given)
    dimensions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EmbedRequest":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class EmbedResult:
    request_id: str
    prompt_tokens: int
    count: int
    dimensions: int
    data: str  # base64 of count x dimensions little-endian float32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vectors(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.data), dtype="<f4").reshape(self.count, self.dimensions)

    @classmethod
    def of(cls, request_id: str, prompt_tokens: int, vectors: list[np.ndarray]) -> "EmbedResult":
        matrix = np.stack(vectors).astype("<f4", copy=False)
        return cls(request_id, prompt_tokens, matrix.shape[0], matrix.shape[1],
                   base64.b64encode(matrix.tobytes()).decode("ascii"))
