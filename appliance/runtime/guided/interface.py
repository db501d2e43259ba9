"""Grammar-constrained decoding: the contract between the engine and a grammar library.

A request's guided-decoding spec (``SamplingParams.guided``) is one of

    {"type": "json_object"}                                   any JSON object
    {"type": "json_schema", "schema": {...}, "strict": bool}  a JSON value valid against the schema
    {"type": "lark", "grammar": "..."}                        a Lark grammar (llguidance's dialect; %json allowed)

A backend compiles a spec once (``compile``, cached by the caller, off the step loop) and makes a fresh ``Matcher``
per sequence from the compiled grammar. Each step the sampler asks every guided row's matcher to fill its row of a
token bitmask; the engine then feeds the sampled token back with ``accept``.

The bitmask layout is the one llguidance and xgrammar share: int32 words, bit ``t % 32`` of word ``t // 32`` set
when token ``t`` is allowed.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the gateway validates specs through this package without loading torch
    import torch

SPEC_TYPES = ("json_object", "json_schema", "lark")


class InvalidGrammar(ValueError):
    """The spec cannot be compiled; the message names the problem (the gateway answers 400 on response_format)."""


def check_spec(spec: Any) -> None:
    """Structural check of a spec (no compilation); raises InvalidGrammar."""
    if not isinstance(spec, dict) or spec.get("type") not in SPEC_TYPES:
        raise InvalidGrammar(f"guided must be an object with type one of {list(SPEC_TYPES)}")
    if spec["type"] == "json_schema" and not isinstance(spec.get("schema"), dict):
        raise InvalidGrammar("guided json_schema needs a schema object")
    if spec["type"] == "lark" and not (isinstance(spec.get("grammar"), str) and spec["grammar"]):
        raise InvalidGrammar("guided lark needs a grammar string")


class Matcher(ABC):
    """One sequence's position in its grammar."""

    vocab_size: int  # the width, in tokens, of the bitmask rows it fills

    @abstractmethod
    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the tokens allowed next into row `row` of `bitmask` (only EOS once the grammar is finished)."""

    @abstractmethod
    def accept(self, token_id: int) -> bool:
        """Advance by the sampled token; False if the grammar refuses it."""

    @abstractmethod
    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more: the sequence stops here."""


class GrammarBackend(ABC):
    """A grammar library bound to one tokenizer and vocabulary."""

    vocab_size: int  # bitmask width in tokens

    @abstractmethod
    def compile(self, spec: dict[str, Any]) -> Any:
        """Compile a spec; raises InvalidGrammar naming the problem. Thread-safe; may take milliseconds or more."""

    @abstractmethod
    def matcher(self, compiled: Any) -> Matcher:
        """A fresh matcher at the start of a compiled grammar (cheap)."""


def allocate_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    """All tokens allowed, for `rows` rows."""
    import torch

    return torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def allowed_tokens(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The bitmask as a bool tensor (rows, vocab_size)."""
    import torch

    bits = (bitmask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32, device=bitmask.device)) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()
