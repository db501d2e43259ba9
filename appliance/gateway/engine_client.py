"""Streaming client for an engine replica's internal server (appliance/runtime/protocol.py).

Keep-alive connections per replica address (TCP or Unix socket) and event loop. Events come back as the protocol's
plain dicts (``{"type": "delta", ...}``): the relay reads a few fields of each and builds no objects per token.
Leaving a stream early closes its connection, which the engine takes as an abort; ``abort()`` also says so.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from appliance.runtime.protocol import GenerateRequest

from . import conf
from .engine_http import ConnectionBroken, Pool, Response
from .routing import Target


def wire(request: GenerateRequest) -> dict[str, Any]:
    """GenerateRequest.to_dict() without its deep copy (the gateway builds one per request)."""
    return {"request_id": request.request_id, "prompt": request.prompt, "prompt_token_ids": request.prompt_token_ids,
            "messages": request.messages, "sampling": request.sampling, "cache_salt": request.cache_salt,
            "priority": request.priority, "echo_prompt": request.echo_prompt}


class EngineRejected(Exception):
    """The engine refused the request before streaming (HTTP 4xx with an OpenAI-shaped error)."""

    def __init__(self, status: int, error: dict) -> None:
        super().__init__(error.get("message", "rejected"))
        self.status = status
        self.error = error


class EngineUnavailable(Exception):
    """The replica could not be reached, or is not serving (nothing was generated)."""


class EngineFailed(Exception):
    """The replica broke off mid-stream."""


class EngineClient:
    def __init__(self) -> None:
        self._pools: dict[tuple, Pool] = {}

    def _pool(self, target: Target) -> Pool:
        key = (id(asyncio.get_running_loop()), target.host, target.port, target.socket_path)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(target.host, target.port, target.socket_path)
        return pool

    async def _request(self, target: Target, path: str, body: dict[str, Any], head_timeout_s: float) -> Response:
        payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            return await self._pool(target).request("POST", path, payload, conf.engine_connect_timeout_s(),
                                                    head_timeout_s)
        except (ConnectionBroken, OSError, asyncio.TimeoutError) as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def open(self, target: Target, request: GenerateRequest | dict[str, Any]) -> Response:
        """Send a GenerateRequest (or its wire dict); returns the open streaming response (status 200) or raises
        EngineRejected / EngineUnavailable."""
        body = wire(request) if isinstance(request, GenerateRequest) else request
        response = await self._request(target, "/generate", body, conf.engine_read_timeout_s())
        if response.status == 200:
            return response
        try:
            raw = await response.read()
        except ConnectionBroken as exc:
            raise EngineUnavailable(str(exc)) from exc
        finally:
            response.close()
        try:
            error = json.loads(raw)["error"]
            if not isinstance(error, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            error = {"message": raw.decode(errors="replace")[:500] or f"engine answered {response.status}"}
        if response.status >= 500:
            raise EngineUnavailable(error.get("message", ""))
        raise EngineRejected(response.status, error)

    @staticmethod
    async def events(response: Response) -> AsyncIterator[list[dict[str, Any]]]:
        """The NDJSON events of an open response, in the batches they arrived in; EngineFailed if the stream
        breaks off or carries something that is not an event."""
        loads = json.loads
        try:
            async for lines in response.batches():
                events = [loads(line) for line in lines]
                for event in events:
                    if not isinstance(event, dict) or "type" not in event:
                        raise ValueError(f"not an event: {str(event)[:100]}")
                yield events
        except ConnectionBroken as exc:
            raise EngineFailed(str(exc)) from exc
        except ValueError as exc:
            raise EngineFailed(f"malformed event from the engine: {exc}") from exc

    async def abort(self, target: Target, request_id: str) -> None:
        try:
            response = await self._request(target, "/abort", {"request_id": request_id}, 2.0)
            try:
                await asyncio.wait_for(response.read(), 2.0)
            finally:
                response.close()
        except (EngineUnavailable, ConnectionBroken, asyncio.TimeoutError):
            pass


engine = EngineClient()
