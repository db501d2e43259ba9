"""The admin API schema's postprocessing hook: every operation documents the errors it can answer, and strings say
that they cannot hold NUL.

drf-spectacular documents each operation's success; DRF also answers 400 (input refused: field errors as an object,
or a list of messages), 415 (a body that is not JSON), 401 (no or bad credentials), 403 (not staff, or a viewer
writing), 404 (no such object) and 409 (a delete blocked by a reference). The hook adds those to every operation that can give them, so a client (and
schemathesis in tests/admin_api) can rely on the published schema.
"""
from __future__ import annotations

from typing import Any

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERRORS = {
    "description": "Field errors (field name to messages) or a list of messages.",
    "oneOf": [{"type": "object", "additionalProperties": {}}, {"type": "array", "items": {"type": "string"}}],
}
METHODS = ("get", "put", "patch", "post", "delete")
# PostgreSQL text cannot hold NUL, and DRF refuses it: say so, so that a schema-valid string is an acceptable one.
NO_NUL = "^[^\\x00]*$"
# DRF trims text before checking it is not blank: a required text holds something besides spaces.
NOT_BLANK = "^[^\\x00]*[^\\s\\x00][^\\x00]*$"


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _refuse_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not ({"format", "enum", "pattern"} & schema.keys()):
        schema["pattern"] = NOT_BLANK if schema.get("minLength", 0) >= 1 else NO_NUL
    for child in schema.get("properties", {}).values():
        _refuse_nul(child)
    if isinstance(schema.get("items"), dict):
        _refuse_nul(schema["items"])


def document_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for component in schemas.values():
        _refuse_nul(component)
    schemas.setdefault("ErrorDetail", DETAIL)
    schemas.setdefault("ValidationErrors", VALIDATION_ERRORS)
    detail, invalid = "#/components/schemas/ErrorDetail", "#/components/schemas/ValidationErrors"
    for path, item in result.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("name") != "ordering":  # an unknown ordering is ignored, not refused
                    _refuse_nul(parameter.get("schema", {}))
            responses = operation.setdefault("responses", {})
            queries = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if "requestBody" in operation or queries or method in ("post", "put", "patch"):
                responses.setdefault("400", _json(invalid, "Input refused"))
            if "requestBody" in operation:
                responses.setdefault("415", _json(detail, "The body is not JSON"))
            responses.setdefault("401", _json(detail, "No credentials, or invalid ones"))
            responses.setdefault("403", _json(detail, "Not staff, or a read-only viewer asking to change something"))
            if "{" in path:
                responses.setdefault("404", _json(detail, "No such object"))
            if method == "delete":
                responses.setdefault("409", _json(detail, "Still referenced by other objects"))
    return result
