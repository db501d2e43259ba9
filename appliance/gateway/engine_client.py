"""Streaming client for an engine replica's internal server (appliance/runtime/protocol.py).

Requests go over one session per replica address (TCP or Unix socket) and event loop (engine_session.py): the
replica writes the events of all of them that one engine step produced at once. A replica that predates sessions,
or ``GATEWAY_ENGINE_SESSIONS=0``, gets one /generate stream per request over keep-alive connections instead.
Events come back as the protocol's plain dicts (``{"type": "delta", ...}``): the relay reads a few fields of each
and builds no objects per token. Leaving a stream early aborts its request on the replica.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from appliance.runtime.protocol import GenerateRequest

from . import conf
from .engine_http import ConnectionBroken, Pool, Response
from .engine_session import Session, SessionRefused, SessionStream
from .routing import Target

NO_SESSION_RETRY_S = 60  # how long a replica that refused a session is served per request before asking again


def wire(request: GenerateRequest) -> dict[str, Any]:
    """GenerateRequest.to_dict() without its deep copy (the gateway builds one per request)."""
    return {"request_id": request.request_id, "prompt": request.prompt, "prompt_token_ids": request.prompt_token_ids,
            "messages": request.messages, "tools": request.tools, "sampling": request.sampling, "cache_salt": request.cache_salt,
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
        self._sessions: dict[tuple, Session] = {}
        self._connecting: dict[tuple, asyncio.Future] = {}
        self._no_session: dict[tuple, float] = {}  # replicas that refused a session: when

    @staticmethod
    def _key(target: Target) -> tuple:
        return id(asyncio.get_running_loop()), target.host, target.port, target.socket_path, target.secret

    def _pool(self, target: Target) -> Pool:
        key = self._key(target)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(target.host, target.port, target.socket_path, target.secret)
        return pool

    async def _session(self, target: Target) -> Session | None:
        """The replica's open session on this loop (connecting one if needed, one connect at a time); None if
        sessions are off or the replica refused one."""
        key = self._key(target)
        session = self._sessions.get(key)
        if session is not None and session.usable:
            return session
        if not conf.engine_sessions():
            return None
        loop = asyncio.get_running_loop()
        refused = self._no_session.get(key)
        if refused is not None and loop.time() - refused < NO_SESSION_RETRY_S:
            return None
        connecting = self._connecting.get(key)
        if connecting is None or connecting.get_loop() is not loop:
            connecting = self._connecting[key] = loop.create_task(self._connect(key, target))
            connecting.add_done_callback(lambda t: self._connecting.pop(key, None) if
                                         self._connecting.get(key) is t else None)
        return await asyncio.shield(connecting)

    async def _connect(self, key: tuple, target: Target) -> Session | None:
        try:
            session = await Session.connect(self._pool(target), conf.engine_connect_timeout_s(),
                                            conf.engine_read_timeout_s())
        except SessionRefused as exc:
            if exc.status != 404:
                raise EngineUnavailable(str(exc)) from exc
            self._no_session[key] = asyncio.get_running_loop().time()
            return None
        except (ConnectionBroken, OSError, asyncio.TimeoutError) as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._sessions[key] = session
        # forget it once it breaks (its replica may never come back at this address)
        session.reader.add_done_callback(lambda _: self._sessions.pop(key, None) if self._sessions.get(key) is session
                                         else None)
        return session

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
        session = await self._session(target)
        if session is not None:
            try:
                stream = await session.open(body, conf.engine_read_timeout_s())
            except (ConnectionBroken, asyncio.TimeoutError) as exc:
                raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc
            rejection = stream.started.result()
            if rejection is None:
                return stream
            status, error = rejection
            raise self._refusal(status, error if isinstance(error, dict) else {})
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
        raise self._refusal(response.status, error)

    @staticmethod
    def _refusal(status: int, error: dict[str, Any]) -> Exception:
        if status >= 500:
            return EngineUnavailable(error.get("message", ""))
        return EngineRejected(status, error)

    @staticmethod
    async def events(response: Response | SessionStream) -> AsyncIterator[list[dict[str, Any]]]:
        """The events of an open request, in the batches they arrived in; EngineFailed if the stream breaks off
        or carries something that is not an event."""
        if isinstance(response, SessionStream):
            try:
                async for events in response.events():
                    yield events
            except ConnectionBroken as exc:
                raise EngineFailed(str(exc)) from exc
            return
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

    async def call(self, target: Target, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JSON request and its JSON answer (an encoder replica's /embed); EngineRejected for a 4xx,
        EngineUnavailable if the replica cannot be reached or answers 5xx."""
        response = await self._request(target, path, body, conf.engine_read_timeout_s())
        try:
            raw = await response.read()
        except (ConnectionBroken, asyncio.TimeoutError) as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            data = {"error": {"message": raw.decode(errors="replace")[:500] or f"engine answered {response.status}"}}
        if response.status != 200:
            error = data.get("error")
            raise self._refusal(response.status, error if isinstance(error, dict) else {"message": str(data)[:500]})
        return data

    async def call_raw(self, target: Target, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        """A plain request to the replica (its tokenizer endpoints): (status, body); EngineUnavailable if it
        cannot be reached."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            response = await self._pool(target).request(method, path, payload, conf.engine_connect_timeout_s(),
                                                        conf.engine_connect_timeout_s() * 6)
            try:
                return response.status, await asyncio.wait_for(response.read(), conf.engine_read_timeout_s())
            finally:
                response.close()
        except (ConnectionBroken, OSError, asyncio.TimeoutError) as exc:
            raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from exc

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
