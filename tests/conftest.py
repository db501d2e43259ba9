"""Shared fixtures. Small random-weight checkpoints are built once per session and cached on disk."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build (or reuse within the session) a random-weight HF checkpoint: factory(arch="llama", **overrides)."""
    from appliance.runtime.tiny_models import make_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple, Path] = {}

    def factory(arch: str = "llama", **overrides) -> Path:
        key = (arch, repr(sorted(overrides.items())))
        if key not in cache:
            cache[key] = make_checkpoint(root / f"{arch}-{len(cache)}", arch, **overrides)
        return cache[key]

    return factory


@pytest.fixture(scope="session")
def tiny_llama(checkpoint_factory) -> Path:
    return checkpoint_factory("llama")
