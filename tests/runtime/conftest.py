"""Helpers for engine tests: reference generations from transformers on the same checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from intra-op threads, and on a machine shared with other test runs OpenMP threads
# waiting on each other make every op many times slower; the engine and the transformers reference both use one.
os.environ.setdefault("APPLIANCE_NUM_THREADS", "1")
torch.set_num_threads(1)

PROMPTS = [
    "The quick brown fox",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse, and nothing",
    "def main():\n    print('hello world')",
    "It was",
    "In a hole in the ground there lived a hobbit. Héllo wörld, naïve café, 東京, emoji and symbols. " * 2,
]


def hf_greedy(model_dir: Path, prompts: list, max_new_tokens: int) -> list[list[int]]:
    """transformers' own greedy generation, one prompt at a time (no padding effects), exactly max_new_tokens.

    EOS neither stops nor is suppressed (the engine's ignore_eos), so EOS is unset rather than using min_new_tokens.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    outs = []
    for prompt in prompts:
        ids = torch.tensor([prompt]) if isinstance(prompt, list) else tok(prompt, return_tensors="pt").input_ids
        gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=3)
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


@pytest.fixture(scope="module")
def ext():
    """The CPU extension as `make venv` builds it (the same command; ninja makes it a no-op when it is up to date)."""
    import subprocess
    import sys

    from appliance.runtime import cpu_extension

    done = subprocess.run([sys.executable, "-m", "appliance.runtime.cpu_extension", "build"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cpu_extension.reset()
    module = cpu_extension.ops()
    assert module is not None, cpu_extension.status()
    yield module
    cpu_extension.reset()
