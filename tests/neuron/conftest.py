"""Fixtures for the neuron tests: the labelled NxD Inference EMULATOR (appliance/runtime/neuron/emulator), which is a
test double of the SDK computing with the project's PyTorch model, never the AWS Neuron SDK."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from intra-op threads; on a shared machine they make every op slower (as tests/runtime).
os.environ.setdefault("APPLIANCE_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def emulator(monkeypatch):
    """APPLIANCE_NEURON_SDK=emulator for this test; the kernel dispatch layer is restored afterwards."""
    from appliance.runtime import kernels

    monkeypatch.setenv("APPLIANCE_NEURON_SDK", "emulator")
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0-1")
    yield
    kernels.use_implementations(None)


@pytest.fixture
def long_llama(checkpoint_factory) -> Path:
    """The tiny random-weight Llama with a 2048-token context (the block layout needs 512-token buckets)."""
    return checkpoint_factory("llama", max_position_embeddings=2048)


@pytest.fixture
def llama_config(tiny_llama) -> dict:
    return json.loads(Path(tiny_llama, "config.json").read_text())


def saved_neuron_config(artifact: Path) -> dict:
    """The NeuronConfig an artifact was compiled with, as NxD Inference saves it (neuron_config.json)."""
    return json.loads((Path(artifact) / "neuron_config.json").read_text())["neuron_config"]


def big_config(**overrides) -> dict:
    """A Llama-3-70B-shaped config.json (numbers only; no weights)."""
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
    }
    cfg.update(overrides)
    return cfg
