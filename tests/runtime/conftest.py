"""Helpers for engine tests: reference generations from transformers on the same checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

PROMPTS = [
    "The quick brown fox",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse, and nothing",
    "def main():\n    print('hello world')",
    "It was",
    "In a hole in the ground there lived a hobbit. Héllo wörld, naïve café, 東京, emoji and symbols. " * 2,
]


def hf_greedy(model_dir: Path, prompts: list, max_new_tokens: int) -> list[list[int]]:
    """transformers' own greedy generation, one prompt at a time (no padding effects), exactly max_new_tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    outs = []
    for prompt in prompts:
        ids = torch.tensor([prompt]) if isinstance(prompt, list) else tok(prompt, return_tensors="pt").input_ids
        gen = model.generate(
            ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False, pad_token_id=3
        )
        outs.append(gen[0, ids.shape[1] :].tolist())
    return outs


@pytest.fixture(scope="session")
def hf_reference():
    """hf_reference(model_dir, prompts, max_new_tokens) with results cached for the session."""
    cache: dict = {}

    def get(model_dir: Path, prompts: list, max_new_tokens: int) -> list[list[int]]:
        key = (str(model_dir), repr(prompts), max_new_tokens)
        if key not in cache:
            cache[key] = hf_greedy(model_dir, prompts, max_new_tokens)
        return cache[key]

    return get
