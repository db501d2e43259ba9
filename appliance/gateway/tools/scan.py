"""Reading JSON that may still be arriving: the members of a (possibly unfinished) object, raw text kept."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

_DECODER = json.JSONDecoder()
WS = " \t\r\n"


def skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in WS:
        i += 1
    return i


@dataclass
class PartialObject:
    members: dict[str, tuple[str, bool]] = field(default_factory=dict)  # key -> (raw value text so far, complete)
    end: int | None = None  # index after the closing brace, once the object is complete
    broken: bool = False  # not a JSON object (as far as it goes)


def scan_object(text: str, i: int) -> PartialObject:
    """The members of the JSON object starting at text[i] ('{'). A value still arriving has its raw text so far,
    which is always a prefix of its final raw text (values here are objects or strings, never bare numbers)."""
    obj = PartialObject()
    if i >= len(text) or text[i] != "{":
        obj.broken = i < len(text)
        return obj
    i += 1
    while True:
        i = skip_ws(text, i)
        if i >= len(text):
            return obj
        if text[i] == "}":
            obj.end = i + 1
            return obj
        try:
            key, i = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            obj.broken = text[i] != '"'
            return obj
        if not isinstance(key, str):
            obj.broken = True
            return obj
        i = skip_ws(text, i)
        if i >= len(text):
            return obj
        if text[i] != ":":
            obj.broken = True
            return obj
        i = skip_ws(text, i + 1)
        if i >= len(text):
            obj.members[key] = ("", False)
            return obj
        try:
            _, j = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            obj.members[key] = (text[i:], False)
            return obj
        obj.members[key] = (text[i:j], True)
        i = skip_ws(text, j)
        if i >= len(text):
            return obj
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            obj.broken = True
            return obj
