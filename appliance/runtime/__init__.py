"""The serving engine: continuous batching over a paged KV cache. Never imports Django.

Public API: ``LLM`` (offline, in-process) and ``SamplingParams``; ``protocol`` holds the messages that cross the
process boundary between the gateway and an engine replica's internal server.
"""
