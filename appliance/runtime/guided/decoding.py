"""GuidedDecoding: one replica's grammar backend (made on first use) and its cache of compiled grammars."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from appliance.runtime.guided.interface import GrammarBackend, InvalidGrammar, Matcher, check_spec


def spec_key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


class GuidedDecoding:
    """Compiles specs (thread-safe, cached by spec, least recently used dropped past `cache_size`) and hands out
    matchers. The replica compiles a request's spec in a worker thread before adding it, so the engine's own
    ``matcher()`` call in add_request is a cache hit and the step loop never waits for a compilation."""

    def __init__(self, tokenizer: Any, vocab_size: int, cache_size: int = 256) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._backend: GrammarBackend | None = None
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def backend(self) -> GrammarBackend:
        with self._lock:
            if self._backend is None:
                from appliance.runtime.guided.llguidance_backend import LLGuidanceBackend

                self._backend = LLGuidanceBackend(self._tokenizer, self._vocab_size)
            return self._backend

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size

    def compile(self, spec: dict[str, Any]) -> Any:
        """The compiled grammar of `spec` (from the cache when it has been compiled); raises InvalidGrammar."""
        check_spec(spec)
        key = spec_key(spec)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        compiled = self.backend.compile(spec)
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def matcher(self, spec: dict[str, Any]) -> Matcher:
        return self.backend.matcher(self.compile(spec))

    def __contains__(self, spec: dict[str, Any]) -> bool:
        with self._lock:
            return spec_key(spec) in self._cache


__all__ = ["GuidedDecoding", "InvalidGrammar"]
