"""Each family's tool-call syntax, whole and streamed in pieces: the stream's name and argument deltas add up to the
call the whole text holds, and text that is not a call stays content."""
from __future__ import annotations

import json

import pytest

from appliance.gateway.tools import parser_for, tool_parser_name
from appliance.gateway.tools.stream import ToolStream, message_calls

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("f", "g")]
OUTPUTS = {
    "hermes": 'Sure. <tool_call>\n{"name": "f", "arguments": {"a": "x}y", "b": [1, {"c": 2}]}}\n</tool_call>\n'
              '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>',
    "llama3_json": '{"name": "f", "parameters": {"a": "x}y", "b": [1, {"c": 2}]}}; {"name": "g", "parameters": {}}',
    "mistral": '[TOOL_CALLS][{"name": "f", "arguments": {"a": "x}y", "b": [1, {"c": 2}]}}, '
               '{"name": "g", "arguments": {}}]',
}


@pytest.mark.parametrize("family", sorted(OUTPUTS))
def test_whole_output_gives_each_call_with_json_string_arguments(family):
    content, calls = message_calls(parser_for(family), OUTPUTS[family], TOOLS)
    assert [c["function"]["name"] for c in calls] == ["f", "g"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": "x}y", "b": [1, {"c": 2}]}
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert content == ("Sure. " if family == "hermes" else "")


@pytest.mark.parametrize("family", sorted(OUTPUTS))
@pytest.mark.parametrize("piece", [1, 3, 7])
def test_streamed_deltas_add_up_to_the_calls(family, piece):
    text = OUTPUTS[family]
    stream = ToolStream(parser_for(family))
    content, deltas = "", []
    for i in range(0, len(text), piece):
        c, d = stream.feed(text[i:i + piece], i + piece >= len(text))
        content, deltas = content + c, deltas + d
    heads = [d for d in deltas if "id" in d]
    assert [h["function"]["name"] for h in heads] == ["f", "g"] and [h["index"] for h in heads] == [0, 1]
    for h in heads:
        args = "".join(d["function"]["arguments"] for d in deltas if d["index"] == h["index"])
        assert json.loads(args) == ({"a": "x}y", "b": [1, {"c": 2}]} if h["function"]["name"] == "f" else {})
    assert deltas[0] is heads[0]  # the name comes before any argument
    assert content == ("Sure. " if family == "hermes" else "")


@pytest.mark.parametrize("family", sorted(OUTPUTS))
def test_plain_text_is_content_whole_and_streamed(family):
    text = "The weather is {fine} today <tool"
    assert message_calls(parser_for(family), text, TOOLS) is None
    stream = ToolStream(parser_for(family))
    pieces = [stream.feed(text[i:i + 4], i + 4 >= len(text)) for i in range(0, len(text), 4)]
    assert "".join(c for c, _ in pieces) == text and not any(d for _, d in pieces)


def test_a_call_of_an_unknown_function_is_left_as_content():
    assert message_calls(parser_for("hermes"), '<tool_call>\n{"name": "rm", "arguments": {}}\n</tool_call>',
                         TOOLS) is None


def test_parser_comes_from_the_registered_override_else_the_family():
    assert tool_parser_name("", "qwen2") == "hermes"
    assert tool_parser_name("", "llama") == "llama3_json"
    assert tool_parser_name("", "", "mistral") == "mistral"
    assert tool_parser_name("hermes", "llama") == "hermes"
    assert tool_parser_name("", "gpt2") == ""
