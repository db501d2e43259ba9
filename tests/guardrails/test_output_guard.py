"""The output guard on streamed deltas: a match split across deltas is still caught, text is released as soon as it
cannot start one, and a block ends every choice with content_filter."""
from appliance.guardrails.filters import BLOCK, REDACT, BuiltinFilter, luhn_ok
from appliance.guardrails.output import OutputGuard
from appliance.guardrails.policy import Policy, PolicySpec


def guard(n: int = 1, **kw) -> OutputGuard:
    spec = PolicySpec("tenant t", "", True, True, tuple(kw.get("deny", ())), kw.get("deny_action", BLOCK),
                      tuple(kw.get("pii", ())), kw.get("pii_action", REDACT), None, None)
    return OutputGuard([Policy(spec, BuiltinFilter.from_policy(spec))], n)


def stream(g: OutputGuard, pieces: list[str], index: int = 0) -> tuple[str, str | None]:
    out, reason = [], None
    for k, piece in enumerate(pieces):
        last = k == len(pieces) - 1
        for d in g.feed([{"type": "delta", "index": index, "text": piece, "finish_reason": "stop" if last else None}]):
            out.append(d["text"])
            reason = d.get("finish_reason") or reason
    return "".join(out), reason


def test_luhn_check_separates_card_numbers_from_other_digits():
    assert luhn_ok("4111111111111111") and luhn_ok("5500005555555559")
    assert not luhn_ok("4111111111111112") and not luhn_ok("1234567890123456")


def test_a_card_number_split_across_deltas_is_redacted():
    text, reason = stream(guard(pii=["card", "email"]), ["pay with 4111 11", "11 1111 ", "1111 or mail a@b", ".io now"])
    assert text == "pay with [CARD REDACTED] or mail [EMAIL REDACTED] now" and reason == "stop"


def test_text_far_from_any_match_is_released_without_waiting_for_the_end():
    g = guard(deny=["forbidden"])
    first = g.feed([{"type": "delta", "index": 0, "text": "x" * 100, "finish_reason": None}])
    assert first[0]["text"] == "x" * (100 - g.hold)


def test_a_block_ends_every_choice_with_content_filter():
    g = guard(n=2, deny=["forbidden words"])
    g.feed([{"type": "delta", "index": 1, "text": "other choice", "finish_reason": None}])
    ends = g.feed([{"type": "delta", "index": 0, "text": "these are Forbidden Words indeed", "finish_reason": None}])
    assert g.blocked and [(d["index"], d["finish_reason"]) for d in ends] == [(0, "content_filter"),
                                                                            (1, "content_filter")]
    assert ends[0]["text"] == "these are " and ends[1]["text"] == "other choice"
    assert g.feed([{"type": "delta", "index": 1, "text": "more", "finish_reason": None}]) == []
