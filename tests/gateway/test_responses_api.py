"""The Responses API with the official openai client: whole and streamed answers, stored responses (continued,
fetched, deleted, invisible to other tenants), and clear refusals of what it does not support. Tools and text.format
are in test_responses_tools.py."""
from __future__ import annotations

import openai
import pytest

from .conftest import World, raw_post

pytestmark = pytest.mark.django_db

STREAM_ORDER = ["response.created", "response.in_progress", "response.output_item.added",
                "response.content_part.added"]
STREAM_END = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
              "response.completed"]


def test_response_is_a_response_object_with_text_and_usage(client, world: World):
    out = client.responses.create(model=world.model, input="Hello there", instructions="Be brief.",
                                  max_output_tokens=6, temperature=0, metadata={"run": "1"})
    assert out.id.startswith("resp_") and out.object == "response" and out.model == world.model
    assert out.status in ("completed", "incomplete") and out.metadata == {"run": "1"}
    (item,) = out.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert item.content[0].type == "output_text" and item.content[0].annotations == []
    assert out.output_text == item.content[0].text
    assert out.usage.input_tokens > 0 and 1 <= out.usage.output_tokens <= 6
    assert out.usage.total_tokens == out.usage.input_tokens + out.usage.output_tokens
    if out.usage.output_tokens == 6:
        assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"


def test_responses_text_equals_chat_on_the_same_conversation(client, world: World):
    kwargs = dict(model=world.model, temperature=0)
    resp = client.responses.create(input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
                                   instructions="Be brief.", max_output_tokens=5, **kwargs)
    chat = client.chat.completions.create(messages=[{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": "Hi"}], max_tokens=5, **kwargs)
    assert resp.output_text == chat.choices[0].message.content
    assert resp.usage.input_tokens == chat.usage.prompt_tokens


def test_stream_emits_vllms_event_sequence_numbered_from_zero(client, world: World):
    events = list(client.responses.create(model=world.model, input="Once upon a time", max_output_tokens=5,
                                          temperature=0, stream=True))
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert kinds == STREAM_ORDER + ["response.output_text.delta"] * len(deltas) + STREAM_END and deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress"
    done = events[-1].response
    text = "".join(d.delta for d in deltas)
    assert events[-4].text == text and done.output_text == text and 1 <= done.usage.output_tokens <= 5
    assert len({d.item_id for d in deltas} | {events[2].item.id, done.output[0].id}) == 1
    whole = client.responses.create(model=world.model, input="Once upon a time", max_output_tokens=5,
                                    temperature=0)
    assert whole.output_text == text
    assert client.responses.retrieve(done.id).output_text == text  # stored before response.completed went out


def test_stream_helper_accumulates_the_final_response(client, world: World):
    with client.responses.stream(model=world.model, input="abc", max_output_tokens=4, temperature=0) as stream:
        streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == streamed and final.status in ("completed", "incomplete")


def test_stored_response_is_retrieved_continued_and_deleted(client, world: World):
    first = client.responses.create(model=world.model, input="My name is Ada.", max_output_tokens=4,
                                    temperature=0)
    again = client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == first.output_text and again.usage == first.usage
    follow = client.responses.create(model=world.model, input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=4, temperature=0)
    assert follow.previous_response_id == first.id
    assert follow.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens  # it saw the history
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model=world.model, input="x", previous_response_id=first.id, max_output_tokens=1)
    assert exc.value.body["param"] == "previous_response_id"


def test_store_false_keeps_nothing(client, world: World):
    out = client.responses.create(model=world.model, input="hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(out.id)


def test_another_tenants_response_is_a_404(client, world: World):
    out = client.responses.create(model=world.model, input="secret", max_output_tokens=2)
    with openai.OpenAI(base_url=world.appliance.v1, api_key=world.globex_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(out.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(out.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=world.other_model, input="x", previous_response_id=out.id)
    assert client.responses.retrieve(out.id).id == out.id


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "file_search"}]},
     "tools[1].type"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"properties": {"a": {"type": "strin"}}}}]},
     "tools[0].parameters"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}, "tool_choice"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
      "text": {"format": {"type": "json_object"}}}, "text.format"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"properties": {"a": {"type": "strin"}}}}}},
     "text.format.schema"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "not json"}]},
     "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
     "input[0].content[0]"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"background": True}, "background"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_unsupported_or_invalid_fields_are_a_400_naming_the_field(world: World, extra: dict, param: str):
    r = raw_post(world, "responses", {"model": world.model, "input": "hi", **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert "response_format" not in r.text and "function." not in r.text  # in the Responses spelling
    assert "x-request-id" in r.headers


def test_an_unknown_v1_route_is_an_openai_shaped_404(world: World):
    r = raw_post(world, "responses/resp_x/cancel", {})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (POST /v1/responses/resp_x/cancel)"


def test_input_past_the_context_is_a_400_naming_input(client, world: World):
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model=world.model, input="word " * 2000, max_output_tokens=4)
    assert exc.value.body["code"] == "context_length_exceeded" and exc.value.body["param"] == "input"
