"""Grammar-constrained decoding (structured outputs, enforced tool calls): interface.py is the contract,
llguidance_backend.py the one adapter, decoding.py the per-replica cache."""
from appliance.runtime.guided.decoding import GuidedDecoding
from appliance.runtime.guided.interface import InvalidGrammar, Matcher, allocate_bitmask, allowed_tokens, check_spec

__all__ = ["GuidedDecoding", "InvalidGrammar", "Matcher", "allocate_bitmask", "allowed_tokens", "check_spec"]
