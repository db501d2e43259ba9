"""Request shapes for a load test: the named presets (input:output token ratios) and JSONL prompt files.

Plain Python, no Django. A preset's prompts are token-id lists (exact input lengths, no tokenizer needed), drawn
from ids 10..499 so they fit any vocabulary, the tiny test models' 512 included; every prompt differs, so no level
gets prefix-cache hits another lacks.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shape:
    """Input and output lengths in tokens."""

    input_tokens: int
    output_tokens: int


# The ratios the sizing articles give (question answering 2:1, summarization 8:1, generation 1:1), sized to fit the
# tiny models' 512-token context with room to spare; --input-tokens / --output-tokens scale them for a real model.
PRESETS: dict[str, Shape] = {
    "qa": Shape(64, 32),
    "summarization": Shape(256, 32),
    "generation": Shape(48, 48),
}
TOKEN_ID_RANGE = (10, 500)


@dataclass(frozen=True)
class Prompt:
    """One request's prompt: token ids or text, and how many tokens to generate."""

    prompt: list[int] | str
    max_tokens: int


def preset_prompts(shape: Shape, count: int, seed: int = 0) -> list[Prompt]:
    rng = random.Random(seed)
    lo, hi = TOKEN_ID_RANGE
    return [Prompt([rng.randrange(lo, hi) for _ in range(shape.input_tokens)], shape.output_tokens)
            for _ in range(count)]


def load_jsonl(path: str | Path, default_max_tokens: int) -> list[Prompt]:
    """A JSONL file of prompts, one object a line: {"prompt": "text" | [token ids], "max_tokens": N (optional)}."""
    prompts = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        valid = isinstance(prompt, str) and prompt or (
            isinstance(prompt, list) and prompt and all(isinstance(t, int) and t >= 0 for t in prompt))
        if not valid:
            raise ValueError(f"{path}:{number}: 'prompt' must be a non-empty string or list of token ids")
        max_tokens = row.get("max_tokens", default_max_tokens)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"{path}:{number}: 'max_tokens' must be a positive integer")
        prompts.append(Prompt(prompt, max_tokens))
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def cycle(prompts: list[Prompt], count: int, offset: int = 0) -> list[Prompt]:
    """`count` prompts, reusing the list in order from `offset` when it is shorter."""
    return [prompts[(offset + i) % len(prompts)] for i in range(count)]
