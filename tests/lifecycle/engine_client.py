"""A minimal client of the replica protocol for tests (what the gateway does, without the gateway)."""
from __future__ import annotations

import uuid

import httpx

from appliance.runtime.protocol import GenerateRequest, decode_event


def generate(base_url: str, prompt: str = "Hello there", max_tokens: int = 4, timeout: float = 60.0,
             on_delta=None) -> tuple[str, list]:
    """Stream one request; returns (text, events). Raises httpx errors when the replica goes away."""
    req = GenerateRequest(request_id=uuid.uuid4().hex, prompt=prompt,
                          sampling={"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True})
    events, text = [], ""
    with httpx.Client(timeout=timeout) as client:
        with client.stream("POST", f"{base_url}/generate", json=req.to_dict()) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = decode_event(line)
                events.append(event)
                if event.type == "delta":
                    text += event.text
                    if on_delta:
                        on_delta(event)
    if not events or events[-1].type != "done":
        raise httpx.RemoteProtocolError(f"stream ended without a done event: {events[-1:]}")
    return text, events
