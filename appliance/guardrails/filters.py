"""Content filters: the interface the gateway calls, and the built-in one (a deny list and common PII patterns).

A filter is an object with ``scan(text, stage) -> list[Finding]``; ``stage`` is ``"input"`` or ``"output"``. Each
finding is a span of `text` with what to do about it: ``block`` (refuse the request, or stop the output) or
``redact`` (replace the span). A plug-in filter is a factory (a class or function) taking the policy
(:class:`appliance.guardrails.policy.PolicySpec`) and returning such an object; it must be fast and must not do I/O
per call (it runs on the gateway's event loop, once per request and stream chunk).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

BLOCK, REDACT = "block", "redact"


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str  # what was found: "deny_term", "email", "card", or a plug-in's own word
    action: str  # BLOCK or REDACT
    rule: str = ""  # which rule matched (a deny term; never the matched PII itself)

    @property
    def replacement(self) -> str:
        return f"[{self.kind.upper()} REDACTED]" if self.kind != "deny_term" else "[REDACTED]"


class ContentFilter(Protocol):
    def scan(self, text: str, stage: str) -> list[Finding]:
        """The spans of `text` to block or redact (none: the text passes)."""


EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")  # 13-19 digits, spaces or dashes between


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class BuiltinFilter:
    """A deny list (whole words or phrases, case-insensitive) and PII: emails, and card numbers that pass the
    Luhn check (13-19 digits, optionally grouped by spaces or dashes)."""

    def __init__(self, deny_terms: tuple[str, ...] = (), deny_action: str = BLOCK, pii: tuple[str, ...] = (),
                 pii_action: str = REDACT) -> None:
        terms = sorted({t.strip() for t in deny_terms if t and t.strip()}, key=len, reverse=True)
        self.deny = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)",
                               re.IGNORECASE) if terms else None
        self.deny_action = deny_action
        self.pii = frozenset(pii)
        self.pii_action = pii_action

    @classmethod
    def from_policy(cls, spec) -> "BuiltinFilter":
        return cls(spec.deny_terms, spec.deny_action, spec.pii, spec.pii_action)

    def scan(self, text: str, stage: str) -> list[Finding]:
        found: list[Finding] = []
        if self.deny is not None:
            found += [Finding(m.start(), m.end(), "deny_term", self.deny_action, m.group(0).lower())
                      for m in self.deny.finditer(text)]
        if "email" in self.pii and "@" in text:
            found += [Finding(m.start(), m.end(), "email", self.pii_action) for m in EMAIL.finditer(text)]
        if "card" in self.pii:
            for m in CARD.finditer(text):
                digits = re.sub(r"[ -]", "", m.group(0))
                if luhn_ok(digits):
                    found.append(Finding(m.start(), m.end(), "card", self.pii_action))
        return found


def redact(text: str, findings: list[Finding]) -> str:
    """`text` with every finding's span replaced (overlapping spans: the first one wins)."""
    out, at = [], 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < at:
            continue
        out.append(text[at:f.start])
        out.append(f.replacement)
        at = f.end
    out.append(text[at:])
    return "".join(out)
