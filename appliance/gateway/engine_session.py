"""The gateway's end of a replica session (``POST /session``, appliance/runtime/server_session.py): one full-duplex
HTTP/1.1 exchange per replica and event loop that carries every request this process sends the replica.

Commands go out as chunks of the request body; one reader task takes the response's chunks (all the events one
engine step produced for this session's requests), splits them by request id and wakes each request once. A
request's `SessionStream` stands in for a /generate response in the relay: its events, and `close()`, which
aborts the request on the replica if it has not ended.

If the session's connection breaks, every request on it fails: those still waiting for their start with
ConnectionBroken before anything was generated (the relay retries them on another replica: the replica aborts
every request of a session it loses), the others mid-stream.
"""
from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, AsyncIterator

from .engine_http import Connection, ConnectionBroken, Pool, read_chunk, read_head

_HEAD = (b"POST /session HTTP/1.1\r\nHost: engine\r\nContent-Type: application/x-ndjson\r\n"
         b"Transfer-Encoding: chunked\r\n")


class SessionRefused(Exception):
    """The replica answered POST /session with something other than 200 (404: it predates sessions; 401: the
    credential is wrong)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the replica answered {status} to POST /session")
        self.status = status


class SessionStream:
    """One request on a session."""

    def __init__(self, session: "Session", request_id: str) -> None:
        self.session = session
        self.request_id = request_id
        self.started: asyncio.Future = session.loop.create_future()  # start (None) or rejection (status, error)
        self.done = False  # the replica has ended it (done, error or rejected), or the gateway has closed it
        self._items: deque[list[dict[str, Any]] | BaseException] = deque()
        self._waiter: asyncio.Future | None = None

    def _push(self, item: list[dict[str, Any]] | BaseException) -> None:
        if isinstance(item, BaseException):
            if not self.started.done():
                self.started.set_exception(item)
            self.done = True
        else:
            if not self.started.done():
                first = item[0]
                if first["type"] == "rejected":
                    self.done = True
                    self.session.streams.pop(self.request_id, None)
                    self.started.set_result((first.get("status", 400), first.get("error") or {}))
                    return
                self.started.set_result(None)
            if item[-1]["type"] in ("done", "error"):
                self.done = True
                self.session.streams.pop(self.request_id, None)
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def events(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The request's events, in the batches they arrived in; ConnectionBroken if the session breaks."""
        while True:
            while not self._items:
                if self.done:
                    return
                self._waiter = self.session.loop.create_future()
                await self._waiter
            item = self._items.popleft()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop listening; a request the replica has not ended is aborted there."""
        if self.done:
            return
        self.done = True
        self._items.clear()  # batches that arrived before the close are not for anyone any more
        self.started.cancel()  # (if still pending) so that a late answer finds no one to tell
        if self.session.streams.pop(self.request_id, None) is self:
            self.session.send({"op": "abort", "request_id": self.request_id})
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Session:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.streams: dict[str, SessionStream] = {}
        self.broken: BaseException | None = None
        self.reader = self.loop.create_task(self._read())

    @classmethod
    async def connect(cls, pool: Pool, connect_timeout_s: float, head_timeout_s: float) -> "Session":
        conn = await pool.connect(connect_timeout_s)
        try:
            conn.writer.write(_HEAD + pool.auth_line + b"\r\n")
            status, _ = await read_head(conn.reader, head_timeout_s)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
            conn.close()
            raise ConnectionBroken(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if status != 200:
            conn.close()
            raise SessionRefused(status)
        return cls(conn)

    @property
    def usable(self) -> bool:
        return self.broken is None and not self.conn.writer.is_closing() and self.loop is asyncio.get_running_loop()

    def send(self, command: dict[str, Any]) -> None:
        if self.broken is not None:
            return
        data = json.dumps(command, separators=(",", ":")).encode() + b"\n"
        try:
            self.conn.writer.write(b"%x\r\n%b\r\n" % (len(data), data))
        except (OSError, RuntimeError) as exc:
            self._fail(ConnectionBroken(f"{type(exc).__name__}: {exc}"))

    async def open(self, body: dict[str, Any], head_timeout_s: float) -> SessionStream:
        """Send a generate command and wait for the replica to start it: the stream, whose `started` holds None
        or, for a request the replica refused, (status, error)."""
        if self.broken is not None:
            raise ConnectionBroken(str(self.broken))
        request_id = body["request_id"]
        if request_id in self.streams:
            raise ValueError(f"request_id {request_id!r} is already open on this session")
        stream = self.streams[request_id] = SessionStream(self, request_id)
        self.send({"op": "generate", **body})
        try:
            await asyncio.wait_for(stream.started, head_timeout_s)
        except BaseException:
            stream.close()
            raise
        return stream

    def close(self) -> None:
        """Close the connection (the replica aborts every request still running on it)."""
        self.reader.cancel()
        self._fail(ConnectionBroken("the session was closed"))

    async def _read(self) -> None:
        reader, loads = self.conn.reader, json.loads
        buffer = b""
        try:
            while True:
                data = await read_chunk(reader)
                if data is None:
                    raise ConnectionBroken("the replica ended the session")
                buffer += data
                if b"\n" not in buffer:
                    continue
                *lines, buffer = buffer.split(b"\n")
                arrived: dict[SessionStream, list[dict[str, Any]]] = {}
                streams = self.streams
                for line in lines:
                    if not line:
                        continue
                    event = loads(line)
                    stream = streams.get(event.pop("id", None))
                    if stream is not None:
                        arrived.setdefault(stream, []).append(event)
                for stream, events in arrived.items():
                    stream._push(events)
        except (ConnectionBroken, OSError, asyncio.IncompleteReadError, ValueError, AttributeError, KeyError,
                TypeError) as exc:
            self._fail(exc if isinstance(exc, ConnectionBroken) else ConnectionBroken(f"{type(exc).__name__}: {exc}"))
        except asyncio.CancelledError:
            self._fail(ConnectionBroken("the session was closed"))
            raise

    def _fail(self, exc: ConnectionBroken) -> None:
        if self.broken is None:
            self.broken = exc
        self.conn.close()
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream._push(exc)
