"""Stored responses of the Responses API: the request's setup (its conversation, continued from a stored
response, and the hook that stores the answer) and the tenant-scoped lookups behind GET and DELETE."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from .auth import Caller
from .db import run_db, run_db_write
from .errors import APIError, invalid
from .params import ParsedRequest
from .responses_api import chat_request, input_messages, not_found, parse_responses
from .responses_output import ResponsesBuilder

if TYPE_CHECKING:
    from .relay import Call

log = logging.getLogger(__name__)

Setup = Callable[["Call"], None]
Prepare = Callable[[Caller, bytes, str], Awaitable[tuple[ParsedRequest, Setup]]]


def _load(tenant_id: int, response_id: str):
    from .models import StoredResponse

    return StoredResponse.objects.filter(id=response_id, tenant_id=tenant_id).first()


def _delete(tenant_id: int, response_id: str) -> int:
    from .models import StoredResponse

    return StoredResponse.objects.filter(id=response_id, tenant_id=tenant_id).delete()[0]


def _save(**fields) -> None:
    from .models import StoredResponse

    StoredResponse(**fields).save(force_insert=True)


async def prepare(caller: Caller, raw: bytes, request_id: str) -> tuple[ParsedRequest, Setup]:
    body, new_input = parse_responses(raw)
    conversation = new_input
    previous_id = body.get("previous_response_id")
    if previous_id:
        previous = await run_db(_load, caller.tenant_id, previous_id)
        if previous is None:
            raise not_found(previous_id, param="previous_response_id")
        try:
            answer = input_messages(previous.body["output"])
        except APIError:
            raise invalid(f"Previous response '{previous_id}' ends with an unfinished function call (cut by "
                          "max_output_tokens); it cannot be continued.", param="previous_response_id")
        conversation = [*previous.conversation, *answer, *new_input]
    req = chat_request(body, conversation)

    def setup(call: "Call") -> None:
        builder = ResponsesBuilder(req, request_id, int(time.time()), body)
        call.builder = builder
        if body.get("store", True) is False:
            return

        async def store() -> None:
            try:
                builder.finish()
                await run_db_write(_save, id=request_id, tenant_id=caller.tenant_id, api_key_id=caller.key_id,
                                   model_name=req.model, conversation=conversation, output_text=builder.text,
                                   body=builder.response(call.prompt_tokens, call.completion_tokens))
            except Exception:  # the answer stands; only its later retrieval is lost
                log.exception("storing response %s", request_id)

        call.on_complete = store

    return req, setup


async def fetch(caller: Caller, response_id: str) -> dict:
    row = await run_db(_load, caller.tenant_id, response_id)
    if row is None:
        raise not_found(response_id)
    return row.body


async def delete(caller: Caller, response_id: str) -> None:
    if not await run_db_write(_delete, caller.tenant_id, response_id):
        raise not_found(response_id)
