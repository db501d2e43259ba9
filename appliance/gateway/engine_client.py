"""Streaming client for an engine replica's internal server (appliance/runtime/protocol.py).

One keep-alive httpx pool per replica address (TCP or Unix socket) and event loop. Leaving a stream early closes
its connection, which the engine takes as an abort; ``abort()`` also says so explicitly.
"""
from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import httpx

from appliance.runtime.protocol import Event, GenerateRequest, decode_event

from . import conf
from .routing import Target


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
        self._clients: dict[tuple, httpx.AsyncClient] = {}

    def _client(self, target: Target) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        key = (id(loop), target.base_url, target.socket_path)
        client = self._clients.get(key)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=target.socket_path or None, retries=0)
            timeout = httpx.Timeout(conf.engine_read_timeout_s(), connect=conf.engine_connect_timeout_s())
            limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
            client = httpx.AsyncClient(base_url=target.base_url, transport=transport, timeout=timeout, limits=limits)
            self._clients[key] = client
        return client

    async def open(self, target: Target, request: GenerateRequest) -> httpx.Response:
        """Send the request; returns the open streaming response (status 200) or raises EngineRejected."""
        client = self._client(target)
        body = json.dumps(request.to_dict(), separators=(",", ":")).encode()
        try:
            response = await client.send(
                client.build_request("POST", "/generate", content=body,
                                     headers={"content-type": "application/json"}),
                stream=True)
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 200:
            return response
        try:
            raw = await response.aread()
        except httpx.TransportError as exc:
            raise EngineUnavailable(str(exc)) from exc
        finally:
            await response.aclose()
        try:
            error = json.loads(raw)["error"]
            assert isinstance(error, dict)
        except Exception:
            error = {"message": raw.decode(errors="replace")[:500] or f"engine answered {response.status_code}"}
        if response.status_code >= 500:
            raise EngineUnavailable(error.get("message", ""))
        raise EngineRejected(response.status_code, error)

    @staticmethod
    async def events(response: httpx.Response) -> AsyncIterator[Event]:
        """The NDJSON events of an open response; EngineFailed if it breaks off."""
        try:
            async for line in response.aiter_lines():
                if line:
                    yield decode_event(line)
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise EngineFailed(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, KeyError) as exc:
            raise EngineFailed(f"malformed event from the engine: {exc}") from exc

    async def abort(self, target: Target, request_id: str) -> None:
        try:
            await self._client(target).post("/abort", json={"request_id": request_id}, timeout=2.0)
        except httpx.HTTPError:
            pass

    async def health(self, target: Target) -> dict:
        response = await self._client(target).get("/health", timeout=5.0)
        return response.json()


engine = EngineClient()
