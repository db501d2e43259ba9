"""Fixtures for the neuron tests: SDK test doubles (see sdk_doubles/__init__.py for what they do not prove)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.neuron.sdk_doubles import install_nxdi

# Tiny models gain nothing from intra-op threads; on a shared machine they make every op slower (as tests/runtime).
os.environ.setdefault("APPLIANCE_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def nxdi_sdk(monkeypatch):
    return install_nxdi(monkeypatch)


@pytest.fixture
def llama_config(tiny_llama) -> dict:
    return json.loads(Path(tiny_llama, "config.json").read_text())


def big_config(**overrides) -> dict:
    """A Llama-3-70B-shaped config.json (numbers only; no weights)."""
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
    }
    cfg.update(overrides)
    return cfg
