"""EMULATOR (test double): ``utils/hf_adapter.load_pretrained_config`` of NxD Inference 0.8.

The real function reads the checkpoint through ``transformers.AutoConfig`` and returns a closure that copies its
attributes onto an InferenceConfig (including ``_name_or_path``); this one reads config.json directly, so the emulator
runs under any transformers version. It does not import what the real module imports from transformers 4.57
(``SampleDecoderOnlyOutput``): the SDK's transformers pin is enforced by appliance.runtime.neuron.sdk, not here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def load_pretrained_config(model_path_or_name: str | None = None, hf_config: Any = None) -> Callable[[Any], None]:
    def load_config(self: Any) -> None:
        if (model_path_or_name is None) == (hf_config is None):
            raise ValueError('Please provide only one of "model_path_or_name" or "hf_config"')
        data = dict(hf_config) if hf_config is not None else json.loads(
            (Path(model_path_or_name) / "config.json").read_text())
        data.setdefault("_name_or_path", str(model_path_or_name))
        for key in ("dtype", "torch_dtype"):
            data.pop(key, None)
        self.__dict__.update(data)

    return load_config
