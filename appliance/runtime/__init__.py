"""The serving engine: continuous batching over a paged KV cache. Never imports Django.

Public API: ``LLM`` (offline, in-process) and ``SamplingParams``; ``EngineCore`` is the step-driven engine the async
loop and the internal server use; ``protocol`` holds the messages that cross the process boundary between the
gateway and an engine replica's internal server.
"""
from appliance.runtime.sampling_params import SamplingParams

__all__ = ["LLM", "SamplingParams", "EngineConfig", "EngineCore"]


def __getattr__(name: str):
    # torch and transformers load only when the engine itself is used (the gateway imports protocol alone).
    if name == "LLM":
        from appliance.runtime.llm import LLM

        return LLM
    if name == "EngineCore":
        from appliance.runtime.engine import EngineCore

        return EngineCore
    if name == "EngineConfig":
        from appliance.runtime.config import EngineConfig

        return EngineConfig
    raise AttributeError(name)
