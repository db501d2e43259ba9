"""Checks a checkpoint passes before it is registered, so a broken one is refused with the reason instead of
failing later in a compile or a replica: the weights' shapes against config.json (read from the safetensors
headers, no tensor is loaded) and the tokenizer against the vocabulary. Whether the tokenizer has a chat template is
recorded (a model without one serves /v1/completions only)."""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
HEAD_NAMES = ("lm_head.weight", "embed_out.weight")
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks)\.(\d+)\.")


class CheckFailed(ValueError):
    """The checkpoint is not usable as it is; the message says why."""


@dataclass(frozen=True)
class TokenizerFacts:
    size: int  # token ids run from 0 to size - 1
    has_chat_template: bool


def safetensors_shapes(files: list[Path]) -> dict[str, list[int]]:
    """Tensor name -> shape over all the files, from their headers alone."""
    shapes: dict[str, list[int]] = {}
    for path in files:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise CheckFailed(f"{path.name}: not a safetensors file (shorter than its header)")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER_BYTES or length > path.stat().st_size - 8:
                raise CheckFailed(f"{path.name}: not a safetensors file (header length {length} is impossible)")
            try:
                header = json.loads(fh.read(length))
            except (ValueError, UnicodeDecodeError):
                raise CheckFailed(f"{path.name}: its safetensors header is not valid JSON") from None
        if not isinstance(header, dict):
            raise CheckFailed(f"{path.name}: its safetensors header is not a JSON object")
        for name, entry in header.items():
            if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("shape"), list):
                shapes[name] = entry["shape"]
    return shapes


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def check_weights(config: dict[str, Any], shapes: dict[str, list[int]]) -> None:
    """The embedding and LM head have [vocab_size, hidden_size], and there are num_hidden_layers layers."""
    cfg = _text_config(config)
    vocab, hidden, layers = cfg.get("vocab_size"), cfg.get("hidden_size"), cfg.get("num_hidden_layers")
    if not shapes:
        raise CheckFailed("the safetensors files hold no tensors")
    for suffixes, what in ((EMBEDDING_NAMES, "token embedding"), (HEAD_NAMES, "LM head")):
        for name, shape in shapes.items():
            if not name.endswith(suffixes) or len(shape) != 2:
                continue
            if isinstance(vocab, int) and shape[0] != vocab:
                raise CheckFailed(f"the {what} {name} has {shape[0]} rows but config.json's vocab_size is {vocab}")
            if isinstance(hidden, int) and shape[1] != hidden:
                raise CheckFailed(f"the {what} {name} is {shape[1]} wide but config.json's hidden_size is {hidden}")
    indices = {int(m.group(1)) for name in shapes if (m := LAYER_INDEX.search(name))}
    if isinstance(layers, int) and indices and max(indices) + 1 != layers:
        raise CheckFailed(f"the weights hold {max(indices) + 1} layers but config.json's num_hidden_layers is "
                          f"{layers}")


def tokenizer_facts(path: Path) -> TokenizerFacts:
    """The tokenizer's id range and whether it has a chat template; CheckFailed if it cannot be loaded."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001 - any loading error is the reason to give
        raise CheckFailed(f"the tokenizer in {path} cannot be loaded: {exc}") from None
    ids = tok.get_vocab().values()
    size = max(len(tok), max(ids, default=-1) + 1)
    return TokenizerFacts(size, bool(getattr(tok, "chat_template", None)))


def check_tokenizer(config: dict[str, Any], facts: TokenizerFacts) -> None:
    vocab = _text_config(config).get("vocab_size")
    if isinstance(vocab, int) and facts.size > vocab:
        raise CheckFailed(f"the tokenizer has {facts.size} tokens but config.json's vocab_size is {vocab}: token "
                          f"ids {vocab} and above would index past the model's embedding")
