"""What the engine returns: per request, its completions so far, and timings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompletionOutput:
    index: int  # which of the n completions
    token_ids: list[int] = field(default_factory=list)  # all generated so far
    text: str = ""  # all detokenized so far (never a broken multi-byte character; stop string excluded)
    new_token_ids: list[int] = field(default_factory=list)  # generated in the step that produced this output
    new_text: str = ""
    logprobs: list[dict[str, Any]] | None = None  # one per token: {"token_id", "token", "logprob", "top": [...]}
    finish_reason: str | None = None  # "stop" | "length" | "abort"

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestMetrics:
    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finished_time: float | None = None
    inter_token_latencies: list[float] = field(default_factory=list)

    @property
    def queue_s(self) -> float | None:
        return None if self.first_scheduled_time is None else self.first_scheduled_time - self.arrival_time

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def e2e_s(self) -> float | None:
        return None if self.finished_time is None else self.finished_time - self.arrival_time


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    metrics: RequestMetrics
    prompt: str | None = None
    # the prompt's own token logprobs (first entry's logprob None), on the one output where they became complete
    prompt_logprobs: list[dict[str, Any]] | None = None

    @property
    def finished(self) -> bool:
        return all(o.finished for o in self.outputs)

    # Single-completion conveniences, the LLM.generate contract: outs[i].token_ids / .text / .finish_reason
    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def finish_reason(self) -> str | None:
        return self.outputs[0].finish_reason
