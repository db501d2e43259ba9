"""GET /v1/openapi.json: the OpenAPI description of /v1 and the tokenizer routes. Its paths are exactly those the
URL resolver serves to API-key holders, it is valid OpenAPI 3.1, and every operation documents the OpenAI error
shape."""
from __future__ import annotations

import re

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

ROOT_ROUTES = {"tokenize", "detokenize", "tokenizer_info"}


def _openapi_paths(pattern: str) -> list[str]:
    """A Django route or regex as the OpenAPI path(s) it matches: <conv:name> → {name}; (?P<x>a|b) → both."""
    pattern = pattern.lstrip("^").rstrip("$")
    choice = re.search(r"\(\?P<\w+>([^)]*)\)", pattern)
    if choice:
        return [p for alt in choice.group(1).split("|")
                for p in _openapi_paths(pattern[:choice.start()] + alt + pattern[choice.end():])]
    return [re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern)]


def served_paths() -> set[str]:
    paths: set[str] = set()
    for entry in get_resolver().url_patterns:
        prefix = str(entry.pattern)
        if isinstance(entry, URLResolver) and prefix == "v1/":
            for route in entry.url_patterns:
                assert isinstance(route, URLPattern)
                paths.update("/v1/" + p for p in _openapi_paths(str(route.pattern)))
        elif isinstance(entry, URLPattern) and prefix in ROOT_ROUTES:
            paths.add("/" + prefix)
    return paths


def test_description_lists_exactly_the_routes_served():
    body = Client().get("/v1/openapi.json").json()
    served = served_paths() - {"/v1/openapi.json"}
    assert {"/v1/chat/completions", "/v1/async/chat/completions", "/tokenize", "/v1/files/{file_id}/content"} <= served
    assert set(body["paths"]) == served


def test_description_is_valid_openapi_and_needs_no_key():
    response = Client().get("/v1/openapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    validate(response.json())


def test_every_operation_documents_the_openai_error_shape():
    body = Client().get("/v1/openapi.json").json()
    error = body["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]
    for path, item in body["paths"].items():
        for method, operation in item.items():
            for status in ("400", "401", "404", "429"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_an_error_the_gateway_sends_matches_the_described_shape():
    from jsonschema import validate as validate_json

    body = Client().get("/v1/openapi.json").json()
    answer = Client().get("/v1/models")  # no key: a 401 from the gateway itself
    assert answer.status_code == 401
    validate_json(answer.json(), body["components"]["schemas"]["Error"])
