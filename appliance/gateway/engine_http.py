"""A small HTTP/1.1 client for the engine's internal server: keep-alive connections over TCP or a Unix socket,
and a response body read as NDJSON lines as they arrive (chunked or not).

The gateway relays every token through here, so it avoids a general-purpose client's per-chunk overhead.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator

MAX_IDLE = 64


class ConnectionBroken(Exception):
    """The connection failed or closed before the response was complete."""


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    conn: Connection
    pool: "Pool"
    chunked: bool
    length: int | None
    done: bool = False
    _buffer: bytes = b""

    @classmethod
    def of(cls, status: int, headers: dict[str, str], conn: Connection, pool: "Pool") -> "Response":
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = None if chunked or "content-length" not in headers else int(headers["content-length"])
        return cls(status, headers, conn, pool, chunked, length)

    async def read(self) -> bytes:
        """The whole body."""
        parts = [line async for line in self._raw()]
        return b"".join(parts)

    async def _raw(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        try:
            if self.chunked:
                while (data := await read_chunk(reader)) is not None:
                    yield data
            elif self.length is not None:
                remaining = self.length
                while remaining > 0:
                    data = await reader.read(min(remaining, 65536))
                    if not data:
                        raise ConnectionBroken("connection closed mid-response")
                    remaining -= len(data)
                    yield data
            else:
                while data := await reader.read(65536):
                    yield data
                self.headers["connection"] = "close"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise ConnectionBroken(f"{type(exc).__name__}: {exc}") from exc
        self.done = True
        self.release()

    async def batches(self) -> AsyncIterator[list[bytes]]:
        """The body's non-empty lines, in batches: all the lines completed by one read, as soon as it arrives."""
        buffer = b""
        async for data in self._raw():
            buffer += data
            if b"\n" not in buffer:
                continue
            *complete, buffer = buffer.split(b"\n")
            lines = [line for line in complete if line]
            if lines:
                yield lines
        if buffer.strip():
            yield [buffer]

    def release(self) -> None:
        """Give a fully read connection back for reuse; close anything else."""
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if self.done and self.headers.get("connection", "").lower() != "close":
            self.pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (an unfinished stream: the engine takes this as an abort)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            if self.done:
                self.pool.put(conn)
            else:
                conn.close()


@dataclass
class Pool:
    host: str
    port: int | None
    socket_path: str = ""
    secret: str = field(default="", repr=False)  # sent as the bearer credential on every request (replica_auth.py)
    idle: list[Connection] = field(default_factory=list)

    @property
    def auth_line(self) -> bytes:
        """The Authorization header line (CRLF-terminated), or nothing for an open replica."""
        return f"Authorization: Bearer {self.secret}\r\n".encode() if self.secret else b""

    async def connect(self, timeout_s: float) -> Connection:
        if self.socket_path:
            opening = asyncio.open_unix_connection(self.socket_path, limit=1 << 20)
        else:
            opening = asyncio.open_connection(self.host, self.port, limit=1 << 20)
        reader, writer = await asyncio.wait_for(opening, timeout_s)
        return Connection(reader, writer)

    def put(self, conn: Connection) -> None:
        if len(self.idle) < MAX_IDLE and not conn.writer.is_closing():
            self.idle.append(conn)
        else:
            conn.close()

    async def request(self, method: str, path: str, body: bytes, connect_timeout_s: float,
                      head_timeout_s: float, headers: dict[str, str] | None = None) -> Response:
        """Send a request and read the response head. A reused connection that turns out dead is retried once
        on a new one; ConnectionBroken (or OSError / TimeoutError on connect) if the server cannot be reached."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (f"{method} {path} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\n").encode() + self.auth_line + b"\r\n" + body
        for attempt in range(2):
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self.connect(connect_timeout_s)
            try:
                conn.writer.write(head)
                status, response_headers = await read_head(conn.reader, head_timeout_s)
            except (ConnectionBroken, OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise ConnectionBroken(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:  # cancelled (or timed out) mid-request: the engine takes the close as an abort
                conn.close()
                raise
            return Response.of(status, response_headers, conn, self)
        raise ConnectionBroken("unreachable")


async def read_chunk(reader: asyncio.StreamReader) -> bytes | None:
    """The next chunk of a chunked body; None at its end (the trailers read too)."""
    size_line = await reader.readline()
    if not size_line:
        raise ConnectionBroken("connection closed mid-response")
    size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
    if size == 0:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        return None
    return (await reader.readexactly(size + 2))[:-2]


async def read_head(reader: asyncio.StreamReader, timeout_s: float) -> tuple[int, dict[str, str]]:
    """A response's status and headers (names lower-cased)."""
    status_line = await asyncio.wait_for(reader.readline(), timeout_s)
    if not status_line:
        raise ConnectionBroken("connection closed before the response")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return status, headers
        if not line:
            raise ConnectionBroken("connection closed in the response head")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
