"""The Responses answer built from a model's text, without a server: words before a call become a message item
ahead of the function_call item, whole and streamed alike (a random model seldom writes that on its own)."""
from __future__ import annotations

import json

from appliance.gateway.params import ParsedRequest
from appliance.gateway.responses_output import ResponsesBuilder
from appliance.gateway.tools import parser_for

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
PIECES = ["Let me check.", "<tool_", "call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": ",
          "\"Paris\"}}\n</tool_call>"]


def _builder(stream: bool) -> ResponsesBuilder:
    req = ParsedRequest("responses", "m", stream=stream, tools=TOOLS, tool_choice="auto",
                        tool_parser=parser_for("hermes"), sampling={"temperature": 1.0, "top_p": 1.0})
    return ResponsesBuilder(req, "resp_1", 0, {"tools": [{"type": "function", "name": "get_weather"}]})


def _deltas():
    return [{"index": 0, "text": t, "finish_reason": "stop" if k == len(PIECES) - 1 else None}
            for k, t in enumerate(PIECES)]


def _events(raw: str) -> list[dict]:
    return [json.loads(block.split("data: ", 1)[1]) for block in raw.split("\n\n") if block]


def test_text_before_a_call_is_a_message_item_first_whole():
    b = _builder(stream=False)
    for d in _deltas():
        b.add(d)
    message, call = b.whole(10, 5)["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == "Let me check."
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert json.loads(call["arguments"]) == {"city": "Paris"} and call["call_id"].startswith("call_")


def test_text_before_a_call_streams_a_closed_message_then_the_call():
    b = _builder(stream=True)
    raw = b.stream_head().decode() + "".join(b.chunk(d) for d in _deltas()) + b.stream_tail(10, 5).decode()
    events = _events(raw)
    kinds = [e["type"] for e in events]
    first_call_delta = kinds.index("response.function_call_arguments.delta")
    assert kinds[:first_call_delta] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added"]
    assert kinds[-4:] == ["response.function_call_arguments.delta", "response.function_call_arguments.done",
                          "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["output_index"] for e in events if e["type"].startswith("response.function_call")] == \
        [1] * (len(events) - first_call_delta - 2)
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    message, call = events[-1]["response"]["output"]
    assert message["content"][0]["text"] == "Let me check." and json.loads(arguments) == {"city": "Paris"}
    assert call["arguments"] == arguments and call["id"] == events[first_call_delta - 1]["item"]["id"]
