"""Function tools and structured outputs on the Responses API, with the official openai client against the live
gateway, on the random-weight Qwen2 with a tools chat template ("tiny-tools"): calls come back as function_call
items (streamed as vLLM streams them), their outputs continue the conversation, and text.format holds."""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.django_db

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"],
        "additionalProperties": False}
ZONE = {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
        "required": ["zone"], "additionalProperties": False}
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": CITY,
           "strict": True}
TIME = {"type": "function", "name": "get_time", "description": "Local time", "parameters": ZONE, "strict": True}
SCHEMAS = {"get_weather": CITY, "get_time": ZONE}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY_FORMAT = {"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}}
CALL_EVENTS = ["response.output_item.added", "response.function_call_arguments.delta",
               "response.function_call_arguments.done", "response.output_item.done"]


def _create(client, **kwargs):
    return client.responses.create(model="tiny-tools", input=kwargs.pop("input", ASK), max_output_tokens=128,
                                   **kwargs)


def _assert_valid_call(item, allowed=("get_weather", "get_time")):
    assert item.type == "function_call" and item.status == "completed"
    assert item.id.startswith("fc_") and item.call_id.startswith("call_") and item.name in allowed
    jsonschema.validate(json.loads(item.arguments), SCHEMAS[item.name])


@pytest.mark.parametrize("draw", [0, 1])
def test_required_tool_choice_yields_function_call_items_with_valid_arguments(tools_model, draw):
    out = _create(tools_model, tools=[WEATHER, TIME], tool_choice="required", temperature=1.0)
    assert out.output and out.tool_choice == "required"
    calls = out.output
    if out.status == "incomplete":  # parallel calls allowed: a random-weight model may go on calling up to the cap,
        # and the call it was writing then is marked incomplete; every call before it is whole and valid
        assert out.incomplete_details.reason == "max_output_tokens" and len(calls) >= 2
        assert calls[-1].type == "function_call" and calls[-1].status == "incomplete"
        calls = calls[:-1]
    else:
        assert out.status == "completed"
    for item in calls:
        _assert_valid_call(item)
    assert [t.name for t in out.tools] == ["get_weather", "get_time"] and out.output_text == ""
    stored = tools_model.responses.retrieve(out.id)
    assert [i.model_dump() for i in stored.output] == [i.model_dump() for i in out.output]


def test_streamed_call_arrives_as_vllms_function_call_events(tools_model):
    events = list(_create(tools_model, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
                          temperature=1.0, stream=True))
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert kinds == ["response.created", "response.in_progress", CALL_EVENTS[0], *[CALL_EVENTS[1]] * len(deltas),
                     *CALL_EVENTS[2:], "response.completed"] and len(deltas) > 1
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added, args_done, item_done, completed = events[2], events[-3], events[-2], events[-1].response
    assert added.item.type == "function_call" and added.item.arguments == "" and added.item.status == "in_progress"
    arguments = "".join(d.delta for d in deltas)
    assert args_done.arguments == item_done.item.arguments == completed.output[0].arguments == arguments
    assert {added.item.id, args_done.item_id, item_done.item.id, *(d.item_id for d in deltas)} == {added.item.id}
    assert args_done.name == added.item.name and item_done.item.call_id == added.item.call_id
    (item,) = completed.output
    _assert_valid_call(item)
    assert tools_model.responses.retrieve(completed.id).output[0].call_id == item.call_id


def test_named_tool_choice_through_the_stream_helper(tools_model):
    with tools_model.responses.stream(model="tiny-tools", input=ASK, tools=[WEATHER, TIME], max_output_tokens=128,
                                      tool_choice={"type": "function", "name": "get_time"}) as stream:
        pieces = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert final.output and all(item.name == "get_time" for item in final.output)
    for item in final.output:
        _assert_valid_call(item, ("get_time",))
    assert pieces == "".join(item.arguments for item in final.output)


def test_function_call_output_continues_the_conversation_inline_and_by_previous_response_id(tools_model):
    first = _create(tools_model, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, temperature=0)
    (call,) = first.output
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}
    inline = _create(tools_model, input=[*ASK, *first.output, answer], tools=[WEATHER], text=CITY_FORMAT,
                     temperature=0, store=False)
    chained = _create(tools_model, input=[answer], previous_response_id=first.id, tools=[WEATHER], text=CITY_FORMAT,
                      temperature=0)
    assert inline.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens  # the call and result
    assert chained.usage.input_tokens == inline.usage.input_tokens  # the stored call rendered as the inline one
    assert chained.output_text == inline.output_text and chained.text.format.type == "json_schema"
    jsonschema.validate(json.loads(chained.output_text), CITY)


@pytest.mark.parametrize("draw", [0, 1, 2])
def test_json_schema_text_format_validates_whatever_the_draw(tools_model, draw):
    out = _create(tools_model, text=CITY_FORMAT, temperature=1.0)
    assert out.status == "completed" and [i.type for i in out.output] == ["message"]
    jsonschema.validate(json.loads(out.output_text), CITY)


def test_json_object_text_format_streams_parseable_json(tools_model):
    events = list(_create(tools_model, text={"format": {"type": "json_object"}}, temperature=0, stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert isinstance(json.loads(text), dict) and events[-1].response.output_text == text


def test_hosted_tool_types_are_a_400_naming_them(tools_model):
    with pytest.raises(openai.BadRequestError) as err:
        _create(tools_model, tools=[WEATHER, {"type": "web_search"}])
    assert err.value.body["param"] == "tools[1].type" and "'web_search'" in err.value.body["message"]


def test_a_streamed_call_cut_short_is_incomplete_and_cannot_be_continued(tools_model):
    # greedy, this model's call is 67 tokens and its name is out by the 36th: 48 cut it inside the arguments
    events = list(tools_model.responses.create(model="tiny-tools", input=ASK, tools=[WEATHER], stream=True,
                                               tool_choice="required", max_output_tokens=48, temperature=0))
    done = events[-1].response
    assert done.status == "incomplete" and done.incomplete_details.reason == "max_output_tokens"
    (call,) = done.output
    assert call.type == "function_call" and call.status == "incomplete" and call.name == "get_weather"
    assert call.arguments.startswith("{") and events[-2].item.status == "incomplete"
    with pytest.raises(openai.BadRequestError) as err:
        _create(tools_model, input=[{"type": "function_call_output", "call_id": call.call_id, "output": "{}"}],
                previous_response_id=done.id, tools=[WEATHER])
    assert err.value.body["param"] == "previous_response_id"
