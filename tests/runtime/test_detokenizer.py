"""Incremental detokenization: no broken multi-byte characters, stop strings spanning tokens never streamed."""
from __future__ import annotations

import pytest

from appliance.runtime.detokenizer import IncrementalDetokenizer
from appliance.runtime.tiny_models import build_tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: which character stands for each byte in a byte-level BPE vocabulary."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(512)


def _byte_tokens(tokenizer, text: str) -> list[int]:
    alphabet = _bytes_to_unicode()
    return [tokenizer.convert_tokens_to_ids(alphabet[b]) for b in text.encode()]


def _stream(tokenizer, ids: list[int], stop: list[str] | None = None) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(tokenizer, [1], stop)
    deltas = []
    for token in ids:
        stopped = detok.add_token(token)
        deltas.append(detok.take_delta(stopped))
        if stopped:
            break
    else:
        detok.flush_pending()
        deltas.append(detok.take_delta(True))
    return deltas, detok


def test_multibyte_characters_split_across_tokens_are_never_emitted_broken(tokenizer):
    text = "naïve 東京 🙂 ok"
    ids = _byte_tokens(tokenizer, text)
    assert len(ids) == len(text.encode())
    deltas, detok = _stream(tokenizer, ids)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text == detok.text


def test_stop_string_spanning_tokens_is_cut_and_not_streamed(tokenizer):
    ids = _byte_tokens(tokenizer, "hello world, goodbye")
    deltas, detok = _stream(tokenizer, ids, stop=["lo wo"])
    assert detok.stopped
    assert "".join(deltas) == "hel" == detok.text


def test_text_that_only_starts_like_a_stop_string_is_released(tokenizer):
    ids = _byte_tokens(tokenizer, "a lot of lorem")
    deltas, detok = _stream(tokenizer, ids, stop=["lo wo"])
    assert not detok.stopped
    assert "".join(deltas) == "a lot of lorem"


def test_incremental_text_matches_a_full_decode(tokenizer):
    ids = tokenizer("It was the best of times, it was the worst of times. Héllo wörld").input_ids
    deltas, detok = _stream(tokenizer, ids)
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)
