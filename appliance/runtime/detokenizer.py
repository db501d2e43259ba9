"""Incremental detokenization with stop strings, one instance per sequence.

Text is decoded over a short sliding window of token ids, so each token costs two small decodes. Text ending in
U+FFFD (an incomplete multi-byte character) is held back until the next token completes it. Text that could be the
start of a stop string is held back too, so a stop string spanning several tokens is never streamed; when one
completes, the text is cut before it and the sequence stops.
"""
from __future__ import annotations

from typing import Any

INITIAL_WINDOW = 5


class IncrementalDetokenizer:
    def __init__(
        self, tokenizer: Any, prompt_token_ids: list[int], stop: list[str] | None = None, skip_special_tokens: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt_token_ids[-INITIAL_WINDOW:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.stop = list(stop or [])
        self.max_stop_len = max((len(s) for s in self.stop), default=0)
        self.skip_special_tokens = skip_special_tokens
        backend = getattr(tokenizer, "_tokenizer", None)
        plain = backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False)
        self._decode_ids = backend.decode if plain else tokenizer.decode  # the Rust decoder skips wrapper overhead
        self.text = ""  # decoded so far (stop string and anything after it removed)
        self.emitted = 0  # how much of text has been handed out
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._decode_ids(ids, skip_special_tokens=self.skip_special_tokens)

    def add_token(self, token_id: int) -> bool:
        """Take the next token; returns True when a stop string completed (the sequence must stop)."""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :])
        if len(full_text) <= len(prefix_text) or full_text.endswith("\ufffd"):
            return False
        new_text = full_text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        start = len(self.text)
        self.text += new_text
        if self.stop:
            window = max(0, start - self.max_stop_len + 1)
            hits = [i for i in (self.text.find(s, window) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                return True
        return False

    def flush_pending(self) -> None:
        """At the end of a sequence: take in text still held back for an incomplete character."""
        if self.stopped or self.read_offset == len(self.ids):
            return
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :])
        self.text += full_text[len(prefix_text) :]
        self.read_offset = len(self.ids)

    def take_delta(self, finished: bool) -> str:
        """Text not handed out yet; while unfinished, minus a tail that might begin a stop string."""
        end = len(self.text)
        if not finished and self.stop:
            for k in range(min(self.max_stop_len - 1, end - self.emitted), 0, -1):
                tail = self.text[end - k :]
                if any(s.startswith(tail) for s in self.stop):
                    end -= k
                    break
        delta = self.text[self.emitted : end]
        self.emitted = end
        return delta
