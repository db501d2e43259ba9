"""The output side of the content filter: engine deltas go through it before the client sees them.

Text is held back per choice until it is known not to start a match: the last HOLD characters (longer with longer
deny terms) wait for the next delta, and a match that runs into them holds back from its start. A redaction
replaces the match in the text released; a block stops the request: every unfinished choice ends with the text
released before the match and ``finish_reason: "content_filter"``. At a choice's own finish, all it holds goes out.
"""
from __future__ import annotations

from .filters import BLOCK, Finding, redact
from .policy import Policy

HOLD = 64
CONTENT_FILTER = "content_filter"


class OutputGuard:
    def __init__(self, policies: list[Policy], num_choices: int) -> None:
        self.num_choices = num_choices
        self.filters = [p.filter for p in policies if p.spec.check_output]
        self.owners = [p.spec.owner for p in policies if p.spec.check_output]
        self.hold = max([HOLD, *(len(t) + 1 for p in policies for t in p.spec.deny_terms)])
        self.pending: dict[int, str] = {}
        self.finished: set[int] = set()
        self.findings: list[Finding] = []
        self.blocked = False

    def _scan(self, text: str) -> list[Finding]:
        return [f for flt in self.filters for f in flt.scan(text, "output")]

    def feed(self, deltas: list[dict]) -> list[dict]:
        """The deltas to relay in place of `deltas` (text released so far, redacted; a block ends them all)."""
        out: list[dict] = []
        for delta in deltas:
            index = delta["index"]
            if self.blocked or index in self.finished:
                continue
            text = self.pending.get(index, "") + delta["text"]
            found = self._scan(text)
            blocks = [f for f in found if f.action == BLOCK]
            if blocks:
                cut = min(f.start for f in blocks)
                self.findings += blocks
                out += self._block(delta, index, text[:cut], [f for f in found if f.end <= cut])
                continue
            if delta.get("finish_reason"):
                cut = len(text)
                self.finished.add(index)
            else:
                cut = max(0, len(text) - self.hold)
                for f in found:
                    if f.start < cut < f.end:
                        cut = f.start
            done = [f for f in found if f.end <= cut]
            self.findings += done
            self.pending[index] = text[cut:]
            out.append({**delta, "text": redact(text[:cut], done)})
        return out

    def _block(self, delta: dict, index: int, safe: str, done: list[Finding]) -> list[dict]:
        self.blocked = True
        self.findings += done
        ends = [{**delta, "text": redact(safe, done), "finish_reason": CONTENT_FILTER, "logprobs": None}]
        for other in range(self.num_choices):
            held = self.pending.get(other, "")
            if other != index and other not in self.finished:
                found = [f for f in self._scan(held) if f.action != BLOCK]
                ends.append({"type": "delta", "index": other, "text": redact(held, found), "token_ids": [],
                             "finish_reason": CONTENT_FILTER})
        self.pending.clear()
        return ends

    @property
    def action(self) -> str:
        """What the guard did: "block", "redact", or "" (nothing)."""
        return "block" if self.blocked else ("redact" if self.findings else "")
