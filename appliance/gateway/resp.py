"""A lean, pipelined Redis client for the gateway's hot path: the Lua scripts that admit, pick a replica and
settle every request.

redis-py's asyncio client spends about three times the CPU per call that this does (connection pool checkout,
retry and event wrappers per command); at one admission and one settlement per request that was the largest
single share of the gateway's per-request CPU. Here every event loop keeps one connection, commands are written as
they are issued: at once on an idle connection, else gathered and flushed once per event-loop turn (so a burst of
admissions costs one send, and a lone one no wait), and one reader task hands the replies back in order.

Only what the hot path needs: EVALSHA of registered scripts (loading a script once on NOSCRIPT), ``redis://`` and
``unix://`` URLs with a database number and password. Everything else keeps using redis-py (redis_client.py).
Errors are redis-py's exception classes, so callers see the same types whichever client ran the command.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from redis.exceptions import ConnectionError, ResponseError, TimeoutError

REPLY_TIMEOUT_S = 10.0

Reply = int | bytes | list | None


def pack(args: tuple | list) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> Reply | ResponseError:
    """One RESP2 reply; a server error is returned (not raised) so a pipeline can hand it to its caller."""
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [await read_reply(reader) for _ in range(size)]
    if kind == b"+":
        return rest
    if kind == b"-":
        return ResponseError(rest.decode(errors="replace"))
    raise ConnectionError(f"unexpected reply from Redis: {line[:80]!r}")


class Script:
    def __init__(self, client: "ScriptClient", source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Reply:
        return await self.client.evalsha(self, list(keys), list(args))


class ScriptClient:
    """One pipelined connection, opened on first use and again after it breaks."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "unix"):
            raise ValueError(f"the gateway's script client speaks redis:// and unix:// only, not {parsed.scheme}://")
        self.unix_path = parsed.path if parsed.scheme == "unix" else None
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.username = unquote(parsed.username) if parsed.username else None
        db = parsed.path.strip("/") if parsed.scheme == "redis" else ""
        for part in parsed.query.split("&"):
            name, _, value = part.partition("=")
            if name == "db":
                db = value
        self.db = int(db or 0)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._pending: deque[asyncio.Future] = deque()
        self._connecting: asyncio.Lock | None = None
        self._outbox: list[bytes] = []
        self._received = 0  # replies read so far (the watchdog's sign of life)
        self._watchdog: asyncio.TimerHandle | None = None

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    async def evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Reply:
        reply = await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
            await self._check(await self.execute("SCRIPT", "LOAD", script.source))
            reply = await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._check(reply)

    @staticmethod
    async def _check(reply: Reply | ResponseError) -> Reply:
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute(self, *args: Any) -> Reply | ResponseError:
        """Send one command and wait for its reply (a server error comes back as a ResponseError value)."""
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            self._writer.write(pack(args))  # an idle connection: send at once (nothing to travel with)
        else:
            if not self._outbox:
                loop.call_soon(self._flush)
            self._outbox.append(pack(args))
        self._pending.append(future)  # a caller cancelled while waiting leaves its future here, so order holds
        if self._watchdog is None:
            self._watchdog = loop.call_later(REPLY_TIMEOUT_S / 2, self._watch, self._received)
        return await future

    def _watch(self, received_before: int) -> None:
        """Every REPLY_TIMEOUT_S / 2 while replies are awaited: no reply at all since the last look means Redis
        stopped answering (one timer for everyone, not one per command)."""
        self._watchdog = None
        if not self._pending:
            return
        if self._received == received_before:
            self._broken(TimeoutError(f"no reply from Redis in {REPLY_TIMEOUT_S / 2:.0f}s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(REPLY_TIMEOUT_S / 2, self._watch, self._received)

    def _flush(self) -> None:
        """Send what was queued this turn (to the current connection: a broken one's queue was dropped with it)."""
        outbox, self._outbox = self._outbox, []
        if outbox and self._writer is not None:
            self._writer.write(b"".join(outbox))

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                if self.unix_path:
                    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.unix_path), 5)
                else:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
                setup = []
                if self.password:
                    setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
                if self.db:
                    setup.append(("SELECT", self.db))
                for command in setup:
                    writer.write(pack(command))
                    reply = await asyncio.wait_for(read_reply(reader), 5)
                    if isinstance(reply, ResponseError):
                        writer.close()
                        raise ConnectionError(f"Redis refused {command[0]}: {reply}")
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                raise ConnectionError(f"could not connect to Redis: {exc or type(exc).__name__}") from exc
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read_replies(reader, writer))
            return writer

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                reply = await read_reply(reader)
                self._received += 1
                future = self._pending.popleft()
                if not future.done():
                    future.set_result(reply)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            if self._writer is writer:
                self._broken(ConnectionError(f"lost the Redis connection: {exc or type(exc).__name__}"))

    def _broken(self, exc: Exception) -> None:
        """Fail every caller still waiting (their replies can no longer be matched) and drop the connection."""
        writer, self._writer = self._writer, None
        self._outbox = []
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if writer is not None:
            writer.close()
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # a caller that gave up waiting must not leave it "never retrieved"

    def close(self) -> None:
        self._broken(ConnectionError("closed"))
