"""What one engine step asks of a Neuron backend, per sequence, and what comes back.

The executor turns the engine's batch into SeqSteps; each backend turns SeqSteps into the calls its runtime makes
(NxD Inference: one context-encoding call per prefill and one token-generation call for all decodes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingTriple:
    """The per-sequence sampling knobs Neuron on-device sampling understands (top_k <= 0: off)."""

    top_k: int = 1
    top_p: float = 1.0
    temperature: float = 1.0


@dataclass(frozen=True)
class SeqStep:
    seq_id: int  # the engine's sequence id
    slot: int  # batch line of the compiled artifact this sequence owns (contiguous KV layout, sampler row)
    token_ids: tuple[int, ...]  # tokens to run this step
    start_pos: int  # position of token_ids[0]
    block_table: tuple[int, ...] = ()  # the engine's KV block ids for this sequence
    history: tuple[int, ...] = ()  # token ids at positions [0, start_pos): a prefill re-sends them (block layout)
    sampling: SamplingTriple = field(default_factory=SamplingTriple)

    @property
    def is_prefill(self) -> bool:
        return self.start_pos == 0 or len(self.token_ids) > 1

    @property
    def end_pos(self) -> int:
        """Context length after this step."""
        return self.start_pos + len(self.token_ids)


@dataclass
class BackendCall:
    """One call into the runtime: which rows are real (engine seq ids, in order) and the keyword arguments."""

    kind: str  # "prefill" | "decode"
    seq_ids: list[int]
    kwargs: dict[str, Any]


@dataclass
class StepOutput:
    """Per real row, in `seq_ids` order: the last position's logits (host sampling) and/or sampled tokens."""

    seq_ids: list[int]
    logits: Any = None  # torch.Tensor (rows, vocab) or None
    tokens: Any = None  # torch.Tensor (rows,) or None (on-device sampling)


class SdkBackend:
    """A backend's compile options, model family, and the SDK's modules, loaded on first use
    (`api` defaults to the real SDK through appliance.runtime.neuron.sdk; contract tests pass doubles)."""

    name = ""

    def __init__(self, options: Any, family: str, api: Any = None):
        self.options = options
        self.family = family
        self._api = api
        self.model: Any = None
        self.vocab_size = 0  # the model's; logits wider than this carry the lm_head's padding

    def _load_api(self) -> Any:
        raise NotImplementedError

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self._load_api()
        return self._api
