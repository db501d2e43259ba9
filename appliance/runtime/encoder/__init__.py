"""Encoder models for /v1/embeddings: their own replica kind, served by the same replica server process
(``python -m appliance.runtime.server``) with an encoder in place of the generation engine.

A checkpoint is an encoder when its config's ``model_type`` is a BERT-family encoder. Its sentence-transformers
files (modules.json, 1_Pooling/config.json, sentence_bert_config.json) say how token states become one vector.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ENCODER_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "mpnet"})


def is_encoder_config(config: dict[str, Any] | None) -> bool:
    """True for a Hugging Face config.json of an encoder this appliance serves as an embedding model."""
    if not isinstance(config, dict):
        return False
    architectures = config.get("architectures") or []
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return False
    return config.get("model_type") in ENCODER_MODEL_TYPES


def is_encoder_checkpoint(path: str | Path) -> bool:
    try:
        return is_encoder_config(json.loads((Path(path) / "config.json").read_text()))
    except (OSError, ValueError):
        return False


def is_encoder_model(config: dict[str, Any] | None, path: str | Path | None) -> bool:
    """A registered version: by its stored config.json, else by the checkpoint's own file."""
    if config:
        return is_encoder_config(config)
    return bool(path) and is_encoder_checkpoint(path)
