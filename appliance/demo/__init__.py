"""The demo model shipped with the appliance: a tiny Llama trained here on public-domain text and the project's own
chat exchanges (see corpus/SOURCES.md for what the weights saw and what the repository bundles).

`MODEL_DIR` is the committed Hugging Face-format checkpoint. `ensure_demo_model()` returns it, retraining first
(with `python -m appliance.demo.train`'s defaults, on the corpus folder as it is) if a file is missing.
"""
from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "model"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "generation_config.json")


def is_complete(path: Path = MODEL_DIR) -> bool:
    """Whether `path` holds every file of a loadable checkpoint."""
    return all((path / name).is_file() and (path / name).stat().st_size > 0 for name in REQUIRED_FILES)


def ensure_demo_model() -> Path:
    """Return MODEL_DIR, training the model into it first if it is incomplete."""
    if not is_complete(MODEL_DIR):
        from appliance.demo.train import TrainConfig, train

        train(TrainConfig(), MODEL_DIR)
    return MODEL_DIR
