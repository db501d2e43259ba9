"""The llguidance adapter (https://github.com/guidance-ai/llguidance): JSON Schema, JSON objects and Lark grammars.

Compiling builds an ``LLMatcher`` once per spec; each sequence gets a ``deep_copy`` of it. JSON is generated
without free whitespace (the compact form), and a strict schema gets ``additionalProperties: false`` wherever it
leaves it out, as OpenAI's strict mode requires: otherwise a model that wanders could add properties forever.
"""
from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from appliance.runtime.guided.interface import GrammarBackend, InvalidGrammar, Matcher, check_spec

_JSON_DEFAULTS = {"whitespace_flexible": False}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMAS = ("additionalProperties", "items", "prefixItems", "contains", "not", "if", "then", "else", "allOf",
               "anyOf", "oneOf")


def close_objects(schema: Any) -> Any:
    """A copy of `schema` with additionalProperties false on every object schema that does not set it."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for key in _SCHEMA_MAPS:
            if isinstance(node.get(key), dict):
                for sub in node[key].values():
                    walk(sub)
        for key in _SUBSCHEMAS:
            if isinstance(node.get(key), (dict, list)):
                walk(node[key])
        if "additionalProperties" not in node and isinstance(node.get("properties"), dict):
            node["additionalProperties"] = False

    walk(schema)
    return schema


def serialize(spec: dict[str, Any]) -> str:
    """llguidance's grammar text for a spec; raises InvalidGrammar."""
    import llguidance

    check_spec(spec)
    try:
        if spec["type"] == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=_JSON_DEFAULTS)
        if spec["type"] == "json_schema":
            schema = close_objects(spec["schema"]) if spec.get("strict") else spec["schema"]
            return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=_JSON_DEFAULTS)
        return llguidance.grammar_from("lark", spec["grammar"])
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidGrammar(str(exc)) from None


def validate(spec: dict[str, Any], tokenizer: Any = None) -> None:
    """Compile-check a spec without a matcher (the gateway calls this without a tokenizer); raises InvalidGrammar."""
    import llguidance

    error = llguidance.LLMatcher.validate_grammar(serialize(spec), tokenizer)
    if error:
        raise InvalidGrammar(error)


class LLGuidanceMatcher(Matcher):
    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self._m = matcher
        self.vocab_size = vocab_size

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        import llguidance.torch

        llguidance.torch.fill_next_token_bitmask(self._m, bitmask, row)

    def accept(self, token_id: int) -> bool:
        if self._m.is_stopped():
            return False
        return bool(self._m.consume_token(token_id))

    def rollback(self, num_tokens: int) -> None:
        if num_tokens > 0:
            self._m.rollback(num_tokens)

    @property
    def finished(self) -> bool:
        return self._m.is_stopped()

    @property
    def error(self) -> str:
        return self._m.get_error()


class LLGuidanceBackend(GrammarBackend):
    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        """`tokenizer`: the model's Hugging Face tokenizer; `vocab_size`: the model's logits width."""
        import llguidance.hf

        self.vocab_size = max(vocab_size, len(tokenizer))
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, self.vocab_size)

    def compile(self, spec: dict[str, Any]) -> Any:
        import llguidance

        grammar = serialize(spec)
        error = llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if error:
            raise InvalidGrammar(error)
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidGrammar(matcher.get_error())
        return matcher

    def matcher(self, compiled: Any) -> LLGuidanceMatcher:
        return LLGuidanceMatcher(compiled.deep_copy(), self.vocab_size)
