"""The OpenAPI description of what the appliance serves to API-key holders: /v1 and the root tokenizer routes.

Built from the table below (one row per route: methods, summary, request and response schemas) and served at
``GET /v1/openapi.json`` without a key. Every operation documents the OpenAI error shape (``{"error": {message,
type, param, code}}``) for the statuses the gateway answers. tests/gateway/test_openapi_description.py checks that
the paths are exactly the URL resolver's and that the document is valid OpenAPI 3.1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, JsonResponse

from .errors import TYPES


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    """An object schema that names the fields the appliance reads; others are accepted (OpenAI adds fields)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": True}
    if required:
        schema["required"] = required
    return schema


STRING, INTEGER, NUMBER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
TEXT_OR_LIST = {"anyOf": [STRING, {"type": "array", "items": STRING}]}
PROMPT = {"anyOf": [STRING, {"type": "array", "items": STRING}, {"type": "array", "items": INTEGER},
                    {"type": "array", "items": {"type": "array", "items": INTEGER}}]}
SAMPLING = dict(
    max_tokens={"type": ["integer", "null"], "minimum": 1}, temperature={"type": "number", "minimum": 0},
    top_p=NUMBER, top_k=INTEGER, min_p=NUMBER, n={"type": "integer", "minimum": 1}, stream=BOOLEAN,
    stream_options=obj(include_usage=BOOLEAN), stop={"anyOf": [TEXT_OR_LIST, {"type": "null"}]}, seed=INTEGER,
    presence_penalty=NUMBER, frequency_penalty=NUMBER, repetition_penalty=NUMBER, logit_bias=obj(),
    user=STRING, response_format=obj(["type"], type=STRING),
)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": STRING, "type": {"type": "string", "examples": sorted(set(TYPES.values()))},
                           "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
        }},
    },
    "Model": obj(["id", "object", "created", "owned_by"], id=STRING, object={"const": "model"}, created=INTEGER,
                 owned_by=STRING),
    "ModelList": obj(["object", "data"], object={"const": "list"}, data={"type": "array", "items": ref("Model")}),
    "Usage": obj(prompt_tokens=INTEGER, completion_tokens=INTEGER, total_tokens=INTEGER),
    "CompletionRequest": obj(["model", "prompt"], model=STRING, prompt=PROMPT, echo=BOOLEAN, suffix=STRING,
                             logprobs={"type": ["integer", "null"]}, best_of=INTEGER, **SAMPLING),
    "Completion": obj(["id", "object", "created", "model", "choices"], id=STRING,
                      object={"const": "text_completion"}, created=INTEGER, model=STRING,
                      choices={"type": "array", "items": obj(text=STRING, index=INTEGER, finish_reason=STRING)},
                      usage=ref("Usage")),
    "ChatMessage": obj(["role"], role={"enum": ["system", "developer", "user", "assistant", "tool"]},
                       content={"anyOf": [STRING, {"type": "array"}, {"type": "null"}]}, name=STRING,
                       tool_calls={"type": "array"}, tool_call_id=STRING),
    "ChatCompletionRequest": obj(["model", "messages"], model=STRING,
                                 messages={"type": "array", "items": ref("ChatMessage"), "minItems": 1},
                                 logprobs=BOOLEAN, top_logprobs=INTEGER, max_completion_tokens=INTEGER,
                                 tools={"type": "array"}, tool_choice={"anyOf": [STRING, obj()]},
                                 parallel_tool_calls=BOOLEAN, **SAMPLING),
    "ChatCompletion": obj(["id", "object", "created", "model", "choices"], id=STRING,
                          object={"const": "chat.completion"}, created=INTEGER, model=STRING,
                          choices={"type": "array",
                                   "items": obj(index=INTEGER, message=ref("ChatMessage"), finish_reason=STRING)},
                          usage=ref("Usage")),
    "ResponseRequest": obj(["model", "input"], model=STRING, input={"anyOf": [STRING, {"type": "array"}]},
                           instructions=STRING, previous_response_id=STRING, store=BOOLEAN, stream=BOOLEAN,
                           max_output_tokens=INTEGER, temperature=NUMBER, top_p=NUMBER, tools={"type": "array"},
                           text=obj()),
    "Response": obj(["id", "object", "status"], id=STRING, object={"const": "response"}, status=STRING,
                    model=STRING, output={"type": "array"}, usage=obj()),
    "Deleted": obj(["id", "object", "deleted"], id=STRING, object=STRING, deleted=BOOLEAN),
    "EmbeddingRequest": obj(["model", "input"], model=STRING, input=PROMPT,
                            encoding_format={"enum": ["float", "base64"]}, dimensions=INTEGER, user=STRING),
    "EmbeddingList": obj(["object", "data", "model"], object={"const": "list"}, model=STRING, usage=ref("Usage"),
                         data={"type": "array", "items": obj(object={"const": "embedding"}, index=INTEGER,
                                                             embedding={"anyOf": [{"type": "array"}, STRING]})}),
    "File": obj(["id", "object", "bytes", "created_at", "filename", "purpose"], id=STRING, object={"const": "file"},
                bytes=INTEGER, created_at=INTEGER, filename=STRING, purpose=STRING),
    "FileUpload": {"type": "object", "required": ["file", "purpose"],
                   "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"},
                                  "purpose": {"enum": ["batch", "batch_output"]}}},
    "BatchRequest": obj(["input_file_id", "endpoint", "completion_window"], input_file_id=STRING,
                        endpoint={"enum": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]},
                        completion_window=STRING, metadata={"type": ["object", "null"]}),
    "Batch": obj(["id", "object", "endpoint", "status"], id=STRING, object={"const": "batch"}, endpoint=STRING,
                 status=STRING, input_file_id=STRING, output_file_id={"type": ["string", "null"]},
                 error_file_id={"type": ["string", "null"]}, request_counts=obj()),
    "List": obj(["object", "data"], object={"const": "list"}, data={"type": "array"}, has_more=BOOLEAN),
    "AsyncRequest": obj(["id", "status"], id=STRING, object=STRING, status=STRING, response={}),
    "TokenizeRequest": obj(["model"], model=STRING, prompt=STRING, messages={"type": "array"},
                           add_special_tokens=BOOLEAN),
    "Tokens": obj(["tokens"], tokens={"type": "array", "items": INTEGER}, count=INTEGER, max_model_len=INTEGER),
    "DetokenizeRequest": obj(["model", "tokens"], model=STRING, tokens={"type": "array", "items": INTEGER}),
    "Text": obj(["prompt"], prompt=STRING),
    "TokenizerInfo": obj(),
}

ERRORS = {
    "400": "Invalid request", "401": "Missing or invalid API key", "404": "No such object or model (or not yours)",
    "405": "Method not allowed", "429": "Rate limit or quota exceeded (Retry-After)",
    "503": "The model is starting or unavailable (Retry-After)",
}


@dataclass(frozen=True)
class Operation:
    method: str
    summary: str
    response: str
    request: str | None = None
    stream: bool = False
    content_type: str = "application/json"
    parameters: list[dict[str, Any]] = field(default_factory=list)


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": STRING}


MODEL_ID, RESPONSE_ID = [path_param("name")], [path_param("response_id")]
FILE_ID, BATCH_ID, REQUEST_ID = [path_param("file_id")], [path_param("batch_id")], [path_param("request_id")]

ROUTES: dict[str, list[Operation]] = {
    "/v1/models": [Operation("get", "List the models this key may use", "ModelList")],
    "/v1/models/{name}": [Operation("get", "One model", "Model", parameters=MODEL_ID)],
    "/v1/completions": [Operation("post", "Text completion", "Completion", "CompletionRequest", stream=True)],
    "/v1/chat/completions": [Operation("post", "Chat completion", "ChatCompletion", "ChatCompletionRequest",
                                       stream=True)],
    "/v1/responses": [Operation("post", "Create a response (Responses API)", "Response", "ResponseRequest",
                                stream=True)],
    "/v1/responses/{response_id}": [
        Operation("get", "A stored response", "Response", parameters=RESPONSE_ID),
        Operation("delete", "Delete a stored response", "Deleted", parameters=RESPONSE_ID),
    ],
    "/v1/embeddings": [Operation("post", "Embeddings (encoder deployments)", "EmbeddingList", "EmbeddingRequest")],
    "/v1/files": [
        Operation("get", "List this tenant's files", "List"),
        Operation("post", "Upload a file (multipart)", "File", "FileUpload", content_type="multipart/form-data"),
    ],
    "/v1/files/{file_id}": [
        Operation("get", "A file", "File", parameters=FILE_ID),
        Operation("delete", "Delete a file", "Deleted", parameters=FILE_ID),
    ],
    "/v1/files/{file_id}/content": [Operation("get", "A file's content (JSONL)", "Text", parameters=FILE_ID)],
    "/v1/batches": [
        Operation("get", "List this tenant's batches", "List"),
        Operation("post", "Create a batch", "Batch", "BatchRequest"),
    ],
    "/v1/batches/{batch_id}": [Operation("get", "A batch", "Batch", parameters=BATCH_ID)],
    "/v1/batches/{batch_id}/cancel": [Operation("post", "Cancel a batch", "Batch", parameters=BATCH_ID)],
    "/v1/async/completions": [Operation("post", "Queue a completion; poll /v1/async/{request_id}",
                                        "AsyncRequest", "CompletionRequest")],
    "/v1/async/chat/completions": [Operation("post", "Queue a chat completion; poll /v1/async/{request_id}",
                                             "AsyncRequest", "ChatCompletionRequest")],
    "/v1/async/{request_id}": [
        Operation("get", "An async request's status and result", "AsyncRequest", parameters=REQUEST_ID),
        Operation("delete", "Cancel an async request", "AsyncRequest", parameters=REQUEST_ID),
    ],
    "/tokenize": [Operation("post", "Tokenize a prompt or chat messages (vLLM's)", "Tokens", "TokenizeRequest")],
    "/detokenize": [Operation("post", "Token ids to text (vLLM's)", "Text", "DetokenizeRequest")],
    "/tokenizer_info": [Operation("get", "A model's tokenizer configuration (vLLM's)", "TokenizerInfo",
                                  parameters=[{"name": "model", "in": "query", "required": True,
                                               "schema": STRING}])],
}


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"application/json": {"schema": ref(op.response)}}
    if op.stream:
        success["text/event-stream"] = {"schema": {"type": "string", "description": "With stream: true, server-sent "
                                                                              "events ending with data: [DONE]"}}
    if op.response == "Text" and op.request is None:
        success = {"application/jsonl": {"schema": STRING}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": success}}
    for status, description in ERRORS.items():
        responses[status] = {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
    body: dict[str, Any] = {"summary": op.summary, "parameters": op.parameters, "responses": responses}
    if op.request:
        body["requestBody"] = {"required": True, "content": {op.content_type: {"schema": ref(op.request)}}}
    return body


def description() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Inferentia serving appliance — OpenAI-compatible API", "version": "1",
                 "description": "Authenticate with `Authorization: Bearer <API key>`. Errors are OpenAI's: "
                                "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {path: {op.method: _operation(op) for op in ops} for path, ops in ROUTES.items()},
    }


def openapi_json(request: HttpRequest) -> JsonResponse:
    """GET /v1/openapi.json: this description (no key needed: it holds nothing secret)."""
    return JsonResponse(description(), json_dumps_params={"ensure_ascii": False})
