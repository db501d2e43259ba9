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


def is_outage(exc: BaseException) -> bool:
    """True for an error that means PostgreSQL or Redis is out of reach (restarting, failing over), which passes."""
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError))


def outage(exc: BaseException, retry_after_s: int = 2) -> APIError:
    """The 503 for a request that met an outage (is_outage): a client retries after Retry-After."""
    from redis.exceptions import RedisError

    what = "quota store (Redis)" if isinstance(exc, RedisError) else "database"
    return APIError(503, f"The appliance's {what} is briefly unavailable; retry shortly.", code="service_unavailable",
                    headers={"retry-after": str(retry_after_s)})
