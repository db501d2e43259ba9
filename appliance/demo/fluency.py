"""A measurable stand-in for "reads as English": how much generated text is made of the corpus's words and phrases."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from appliance.demo.corpus_loader import load_chats, load_documents

_WORD = re.compile(r"[a-z]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def corpus_vocabulary() -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """The corpus's lower-cased words and adjacent word pairs (books and chats)."""
    texts = load_documents() + [m["content"] for chat in load_chats() for m in chat]
    words: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    for text in texts:
        for paragraph in text.split("\n\n"):
            ws = words_of(paragraph)
            words.update(ws)
            bigrams.update(zip(ws, ws[1:]))
    return frozenset(words), frozenset(bigrams)


@dataclass(frozen=True)
class Fluency:
    words: int
    distinct_words: int
    word_hit_rate: float
    bigram_hit_rate: float


def fluency(text: str) -> Fluency:
    """Share of `text`'s words found in the corpus, and share of its adjacent word pairs found there."""
    vocab, pairs = corpus_vocabulary()
    ws = words_of(text)
    bg = list(zip(ws, ws[1:]))
    return Fluency(
        words=len(ws),
        distinct_words=len(set(ws)),
        word_hit_rate=sum(w in vocab for w in ws) / len(ws) if ws else 0.0,
        bigram_hit_rate=sum(b in pairs for b in bg) / len(bg) if bg else 0.0,
    )
