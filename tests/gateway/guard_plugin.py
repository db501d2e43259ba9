"""A content filter plug-in for the guardrail tests, loaded by the gateway from its dotted path."""
from appliance.guardrails.filters import BLOCK, Finding


class ShoutFilter:
    """Blocks any input that shouts "LAUNCH CODES" (an example of a filter of one's own)."""

    def __init__(self, spec) -> None:
        self.spec = spec

    def scan(self, text: str, stage: str) -> list[Finding]:
        at = text.find("LAUNCH CODES")
        return [] if at < 0 else [Finding(at, at + 12, "shouting", BLOCK, "LAUNCH CODES")]
