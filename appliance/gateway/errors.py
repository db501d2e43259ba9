"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.http import HttpResponse

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 502: "server_error", 503: "server_error"}


@dataclass
class APIError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type or TYPES.get(self.status, "api_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> HttpResponse:
        resp = HttpResponse(json.dumps(self.body()), status=self.status, content_type="application/json")
        for name, value in self.headers.items():
            resp[name] = value
        return resp


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key")


def model_not_found(name: str) -> APIError:
    """Identical for a model that does not exist and one the key may not use."""
    return APIError(404, f"The model `{name}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")


def unavailable(message: str, retry_after_s: int) -> APIError:
    return APIError(503, message, code="model_unavailable", headers={"retry-after": str(retry_after_s)})
