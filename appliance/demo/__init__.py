"""The demo model shipped with the appliance: a tiny Llama trained here on bundled public-domain text.

`MODEL_DIR` is the committed Hugging Face-format checkpoint. `ensure_demo_model()` returns it, rebuilding it first
(with `python -m appliance.demo.train`'s defaults: about 20 minutes on 2 CPU cores) if a file is missing.
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
    """Return MODEL_DIR, training the model into it first if it is incomplete (~20 minutes on 2 CPU cores)."""
    if not is_complete(MODEL_DIR):
        from appliance.demo.train import TrainConfig, train

        train(TrainConfig(), MODEL_DIR)
    return MODEL_DIR
