"""Tool calling: one parser per model family (hermes, llama3_json, mistral), chosen by the model's registration
(``Model.tool_parser``, else derived from its family), and the request side (request.py) and stream side
(stream.py) of the OpenAI tools API."""
from __future__ import annotations

from .base import Parsed, PartialCall, ToolParser, new_call_id
from .hermes import HermesParser
from .llama3_json import Llama3JsonParser
from .mistral import MistralParser

PARSERS: dict[str, type[ToolParser]] = {p.name: p for p in (HermesParser, Llama3JsonParser, MistralParser)}
TOOL_PARSER_CHOICES = [(name, name) for name in PARSERS]
_BY_FAMILY = {"qwen2": "hermes", "qwen2.5": "hermes", "qwen3": "hermes", "hermes": "hermes", "llama": "llama3_json",
              "llama3": "llama3_json", "mistral": "mistral", "mixtral": "mistral"}


def tool_parser_name(override: str = "", family: str = "", model_type: str = "") -> str:
    """The registered override, else the parser for the model's family or config model_type; "" if none fits."""
    if override:
        return override
    for key in (family, model_type):
        name = _BY_FAMILY.get((key or "").lower())
        if name:
            return name
    return ""


def parser_for(name: str) -> ToolParser | None:
    cls = PARSERS.get(name)
    return cls() if cls else None


__all__ = ["PARSERS", "Parsed", "PartialCall", "ToolParser", "new_call_id", "parser_for", "tool_parser_name"]
