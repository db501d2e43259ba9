"""Structured outputs and tool calling with the official openai client against the live gateway, on a random-weight
Qwen2 model whose chat template renders tools (Hermes-style calls): the grammar, not the model, makes answers valid."""
from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from .conftest import committed, make_key, start_engine

pytestmark = pytest.mark.django_db

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"],
        "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": CITY}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time", "strict": True,
                                         "parameters": {"type": "object", "properties": {
                                             "zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
                                             "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]
SCHEMAS = {"get_weather": CITY, "get_time": TIME["function"]["parameters"]}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tools_model(world, checkpoint_factory, django_db_blocker, tmp_path_factory):
    """A replica of a tiny Qwen2 with a tools chat template, deployed as "tiny-tools" (family qwen2: hermes)."""
    from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica
    from appliance.runtime.tiny_models import TOOLS_CHAT_TEMPLATE

    model_dir = checkpoint_factory("qwen2", chat_template=TOOLS_CHAT_TEMPLATE, max_position_embeddings=2048)
    engine = start_engine(model_dir, tmp_path_factory.mktemp("tools-engine") / "engine.log")

    def setup() -> str:
        model = Model.objects.create(name="tiny-qwen", architecture="Qwen2ForCausalLM", family="qwen2")
        version = ModelVersion.objects.create(model=model, version=1, source_uri=str(model_dir), context_length=2048)
        dep = Deployment.objects.create(name="tiny-tools", model_version=version, status=Deployment.Status.RUNNING,
                                        min_replicas=0, desired_replicas=1)
        node, _ = Node.objects.get_or_create(name="test-node")
        Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1",
                               port=engine.port, secret=engine.secret)
        return make_key("toolsmith", ["tiny-qwen"])[1]

    with django_db_blocker.unblock():
        key = committed(setup)
    with openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60) as c:
        yield c
    engine.stop()


def _chat(client, **kwargs):
    return client.chat.completions.create(model="tiny-tools", messages=kwargs.pop("messages", ASK), **kwargs)


def _assert_valid_call(call, allowed=("get_weather", "get_time")):
    assert call.type == "function" and call.id.startswith("call_") and len(call.id) > 10
    assert call.function.name in allowed
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_json_schema_answer_validates_against_the_schema_whatever_the_seed(tools_model, seed):
    out = _chat(tools_model, seed=seed, temperature=1.0, max_tokens=64,
                response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY,
                                                                        "strict": True}})
    choice = out.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), CITY)


def test_json_schema_on_completions_streamed(tools_model):
    chunks = list(tools_model.completions.create(
        model="tiny-tools", prompt="City:", max_tokens=64, seed=5, stream=True,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), CITY)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_json_object_gives_parseable_json(tools_model):
    out = _chat(tools_model, temperature=0, max_tokens=64, response_format={"type": "json_object"})
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_grammar_that_cannot_finish_in_max_tokens_ends_with_length(tools_model):
    out = _chat(tools_model, seed=0, max_tokens=3,
                response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}})
    assert out.choices[0].finish_reason == "length" and out.choices[0].message.content.startswith("{")


def test_invalid_schema_is_a_400_naming_the_problem(tools_model):
    with pytest.raises(openai.BadRequestError) as err:
        _chat(tools_model, max_tokens=8, response_format={
            "type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "object", "properties": {
                "city": {"type": "strin"}}}}})
    body = err.value.body
    assert err.value.status_code == 400 and body["param"] == "response_format.json_schema.schema"
    assert "strin" in body["message"] and "bad" in body["message"] and body["type"] == "invalid_request_error"


def test_invalid_tool_parameters_are_a_400(tools_model):
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": ["x"],
                                                                          "properties": {"x": {"minLength": "a"}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        _chat(tools_model, max_tokens=8, tools=[bad])
    assert err.value.body["param"] == "tools[0].function.parameters" and "minLength" in err.value.body["message"]


def test_tools_are_rendered_into_the_prompt_by_the_chat_template(tools_model):
    plain = _chat(tools_model, max_tokens=1)
    with_tools = _chat(tools_model, tools=TOOLS, tool_choice="none", max_tokens=1)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 50
    assert with_tools.choices[0].message.tool_calls is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_tool_choice_yields_a_valid_call(tools_model, seed):
    out = _chat(tools_model, tools=TOOLS, tool_choice="required", seed=seed, max_tokens=128)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        _assert_valid_call(call)


def test_required_tool_choice_streams_the_name_first_then_argument_deltas(tools_model):
    chunks = list(_chat(tools_model, tools=TOOLS, tool_choice="required", seed=7, max_tokens=128, stream=True,
                        parallel_tool_calls=False))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_") and deltas[0].function.name
    assert deltas[0].function.arguments == "" and all(d.function.name is None for d in deltas[1:])
    assert len(deltas) > 2  # the arguments arrive in pieces
    arguments = "".join(d.function.arguments for d in deltas)
    name = deltas[0].function.name
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_named_tool_choice_calls_that_function(tools_model):
    out = _chat(tools_model, tools=TOOLS, seed=3, max_tokens=128,
                tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = out.choices[0].message.tool_calls
    assert calls and all(c.function.name == "get_time" for c in calls)
    for call in calls:
        _assert_valid_call(call, ("get_time",))


def test_named_tool_choice_must_be_among_the_tools(tools_model):
    with pytest.raises(openai.BadRequestError) as err:
        _chat(tools_model, tools=TOOLS, max_tokens=8,
              tool_choice={"type": "function", "function": {"name": "launch"}})
    assert err.value.body["param"] == "tool_choice"


def test_follow_up_turn_with_a_tool_message(tools_model):
    first = _chat(tools_model, tools=[WEATHER], tool_choice="required", seed=1, max_tokens=128,
                  parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'}]
    out = _chat(tools_model, messages=messages, tools=[WEATHER], seed=1, max_tokens=64,
                response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}})
    assert out.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result are in the prompt
    jsonschema.validate(json.loads(out.choices[0].message.content), CITY)


def test_tool_message_without_its_call_id_is_a_400(tools_model):
    with pytest.raises(openai.BadRequestError) as err:
        _chat(tools_model, messages=[*ASK, {"role": "tool", "content": "21C"}], tools=[WEATHER], max_tokens=4)
    assert err.value.body["param"] == "messages[1].tool_call_id"
