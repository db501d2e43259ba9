"""The gateway's hand-built engine request matches the protocol's GenerateRequest, and stream chunks written from
templates are the same JSON the general path builds."""
from __future__ import annotations

import json

from appliance.gateway.auth import Caller
from appliance.gateway.engine_client import wire
from appliance.gateway.params import parse
from appliance.gateway.quotas import Decision, Limits
from appliance.gateway.relay import Call
from appliance.gateway.responses import ResponseBuilder
from appliance.runtime.protocol import GenerateRequest


def test_engine_request_has_exactly_the_protocols_fields():
    req = parse("chat", json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                    "max_tokens": 3, "seed": 7}).encode())
    caller = Caller(1, 42, "t", Limits(), Limits(), frozenset({"m"}))
    request = Call(caller, req, None, Decision(True), "rid", 0.0).generate_request()
    assert wire(request) == request.to_dict()
    parsed = GenerateRequest.from_dict(wire(request))
    assert parsed.cache_salt == "tenant-42" and parsed.sampling["max_tokens"] == 3 and parsed.sampling["seed"] == 7


def test_template_chunks_equal_the_general_ones():
    for endpoint, body in (("chat", {"messages": [{"role": "user", "content": "x"}]}), ("completions", {"prompt": "x"})):
        req = parse(endpoint, json.dumps({"model": "m", "stream": True, "n": 2,
                                          "stream_options": {"include_usage": True}, **body}).encode())
        fast, slow = ResponseBuilder(req, "id", 1), ResponseBuilder(req, "id", 1)
        for b in (fast, slow):  # first chunks (with the role) take the general path in both
            b.chunk({"index": 1, "text": "a"})
        text = 'q"\\ é\n'
        fast_chunk = json.loads(fast.chunk({"index": 1, "text": text})[6:])
        slow.choices[1].started = False
        general = json.loads(slow.chunk({"index": 1, "text": text})[6:])
        if endpoint == "chat":
            general["choices"][0]["delta"].pop("role")
        assert fast_chunk == general


def test_a_stream_cut_by_its_replica_ends_with_the_error_event_then_done_except_responses():
    from appliance.gateway.errors import APIError
    from appliance.gateway.params import ParsedRequest
    from appliance.gateway.responses_output import ResponsesBuilder

    body = APIError(503, "The model replica failed: connection closed mid-response").body()
    for endpoint, extra in (("chat", {"messages": [{"role": "user", "content": "x"}]}), ("completions", {"prompt": "x"})):
        req = parse(endpoint, json.dumps({"model": "m", "stream": True, **extra}).encode())
        error, done = ResponseBuilder(req, "id", 1).stream_error(body).decode().split("\n\n")[:2]
        assert json.loads(error.removeprefix("data: "))["error"]["message"].startswith("The model replica failed")
        assert done == "data: [DONE]"
    raw = ResponsesBuilder(ParsedRequest("responses", "m", stream=True), "resp_1", 0, {}).stream_error(body).decode()
    assert raw.startswith("data: {") and "[DONE]" not in raw  # the Responses API never sends [DONE]
