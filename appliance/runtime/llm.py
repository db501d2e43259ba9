"""LLM: offline, in-process generation over EngineCore."""
from __future__ import annotations

import itertools
from typing import Any

from appliance.runtime.config import EngineConfig
from appliance.runtime.engine import EngineCore
from appliance.runtime.outputs import RequestOutput
from appliance.runtime.sampling_params import SamplingParams


class LLM:
    """``LLM(model_dir, device="cpu", **engine_config_fields)``; ``generate(prompts, params)`` runs them all."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.engine = EngineCore(EngineConfig(model=str(model), **kwargs))
        self.tokenizer = self.engine.tokenizer
        self._ids = itertools.count()

    def generate(
        self,
        prompts: str | list[str] | list[list[int]],
        params: SamplingParams | list[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Generate for every prompt (strings or token-id lists); outputs are in prompt order."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]  # type: ignore[list-item]
        params = params or SamplingParams()
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("params must be one SamplingParams or one per prompt")
        ids = [f"llm-{next(self._ids)}" for _ in prompts]
        added = []
        try:
            for request_id, prompt, p in zip(ids, prompts, params):
                self.engine.add_request(request_id, prompt, p)
                added.append(request_id)
        except ValueError:
            for request_id in added:
                self.engine.abort_request(request_id)
            raise
        final: dict[str, RequestOutput] = {}
        while len(final) < len(ids):
            for out in self.engine.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[i] for i in ids]
