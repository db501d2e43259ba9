"""``POST /session``: many requests multiplexed over one full-duplex HTTP/1.1 exchange; the gateway's channel to a
replica (protocol.py describes the wire format).

Why it exists: the replica's HTTP loop shares the GIL with the thread that steps the model, so every microsecond
it spends per token comes out of the model's time. A /generate stream costs a request head, a response head, a
task woken per step and one chunked write per token for each request. A session wakes once per engine step and
writes the events of all its requests that the step produced in one chunk.

The gateway keeps one session per replica and event loop open. Its request body carries commands; the response
carries every request's events, tagged with the request id. If the request body ends (a client that sent a fixed
list of commands), or the replica is shutting down (`drain()`), the session finishes the requests it has, refuses
new ones and then ends the response. If the connection closes, every request still running on it is aborted,
exactly as closing a /generate stream aborts that request.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from appliance.runtime.async_engine import AsyncEngine, RequestStream
from appliance.runtime.protocol import ErrorBody, Event, StartEvent, encode_event

if TYPE_CHECKING:
    from appliance.runtime.server_app import ReplicaApp, Receive, Send

log = logging.getLogger(__name__)

_HEADERS = [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-store")]


def tagged(request_id: str, event: Event) -> bytes:
    """The event's NDJSON line with the request id as its first member: ``{"id":"...",...}``."""
    return b'{"id":' + json.dumps(request_id).encode() + b"," + encode_event(event)[1:]


class _Running:
    __slots__ = ("stream", "prompt_tokens", "want_logprobs")

    def __init__(self, stream: RequestStream, prompt_tokens: int, want_logprobs: bool) -> None:
        self.stream = stream
        self.prompt_tokens = prompt_tokens
        self.want_logprobs = want_logprobs


class ReplicaSession:
    def __init__(self, app: "ReplicaApp", engine: AsyncEngine, send: "Send") -> None:
        self.app = app
        self.engine = engine
        self.send = send
        self.running: dict[str, _Running] = {}
        self.starting: dict[str, asyncio.Task] = {}
        self.ready: list[RequestStream] = []  # streams with outputs not yet encoded
        self.out: list[bytes] = []  # encoded lines not yet written
        self.wake = asyncio.Event()
        self.commands_ended = False
        self.draining = False

    async def run(self, receive: "Receive") -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        self.app.sessions.add(self)
        writer = asyncio.get_running_loop().create_task(self._write())
        current = asyncio.current_task()
        writer.add_done_callback(lambda t: t.cancelled() or t.exception() is None or current.cancel())
        try:
            buffer = b""
            while not self.commands_ended:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                buffer += message.get("body", b"")
                if b"\n" in buffer:
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.command(line)
                if not message.get("more_body", False):
                    if buffer.strip():
                        self.command(buffer)
                    self.commands_ended = True
                    self.wake.set()
            # No more commands: serve the running requests to their end (the writer then ends the response)
            # unless the client goes away first.
            disconnect = asyncio.ensure_future(receive())
            await asyncio.wait([writer, disconnect], return_when=asyncio.FIRST_COMPLETED)
            disconnect.cancel()
        finally:
            self.app.sessions.discard(self)
            writer.cancel()
            self.close()

    def drain(self) -> None:
        """The replica is shutting down: finish the running requests, refuse new ones (503: the gateway sends them
        to another replica), then end the response."""
        self.draining = True
        self.wake.set()

    # ---- commands ---------------------------------------------------------------------------------------------

    def command(self, line: bytes) -> None:
        try:
            data = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            self._reject("", ErrorBody(f"a session command must be a JSON object: {line[:100]!r}"))
            return
        op = data.pop("op", None)
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            self._reject("", ErrorBody("request_id must be a non-empty string", param="request_id"))
        elif op == "abort":
            self.abort(request_id)
        elif op != "generate":
            self._reject(request_id, ErrorBody(f"unknown op {op!r}: generate or abort", param="op"))
        elif self.draining:
            self._reject(request_id, ErrorBody("the replica is shutting down", type="service_unavailable"), 503)
        elif request_id in self.running or request_id in self.starting:
            self._reject(request_id, ErrorBody(f"request_id {request_id!r} is already in use", param="request_id"))
        else:
            self.starting[request_id] = asyncio.get_running_loop().create_task(self._start(request_id, data))

    async def _start(self, request_id: str, data: dict[str, Any]) -> None:
        from appliance.runtime.server_app import BadRequest

        try:
            stream, prompt_tokens, params, start = await self.app.admit(data)
        except BadRequest as exc:
            self._reject(request_id, exc.body(), exc.status)
        except Exception as exc:  # a bug: answer it rather than leave the gateway waiting for a start
            log.exception("session: starting %s", request_id)
            self._reject(request_id, ErrorBody(f"{type(exc).__name__}: {exc}", type="server_error"), 500)
        else:
            self.running[request_id] = _Running(stream, prompt_tokens, params.logprobs is not None)
            self.out.append(tagged(request_id, start))
            stream.on_ready(self._on_ready)
        finally:
            self.starting.pop(request_id, None)
            self.wake.set()

    def abort(self, request_id: str) -> None:
        """Abort a request of this session, started or still being added; nothing more is sent for it."""
        running = self.running.pop(request_id, None)
        if running is not None:
            running.stream.abort()
            return
        starting = self.starting.pop(request_id, None)
        if starting is not None:
            starting.cancel()  # AsyncEngine.add_request aborts a request whose add it had already applied

    def close(self) -> None:
        for request_id in list(self.running) + list(self.starting):
            self.abort(request_id)

    def _reject(self, request_id: str, error: ErrorBody, status: int = 400) -> None:
        line = {"id": request_id, "type": "rejected", "status": status, **error.to_dict()}
        self.out.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        self.wake.set()

    # ---- events -----------------------------------------------------------------------------------------------

    def _on_ready(self, stream: RequestStream) -> None:
        self.ready.append(stream)
        self.wake.set()

    def _encode(self, stream: RequestStream) -> None:
        from appliance.runtime.server_app import deltas_of, done_event, engine_error

        request_id = stream.request_id
        running = self.running.get(request_id)
        if running is None or running.stream is not stream:
            return  # aborted by the gateway: it has stopped listening for this request
        try:
            batch = stream.take()
        except Exception as exc:
            del self.running[request_id]
            self.out.append(tagged(request_id, engine_error(exc)))
            return
        if not batch:
            return
        self.out.extend(tagged(request_id, e) for e in deltas_of(batch, running.want_logprobs))
        if batch[-1].finished:
            del self.running[request_id]
            self.out.append(tagged(request_id, done_event(running.prompt_tokens, batch[-1])))

    async def _write(self) -> None:
        """One write per wakeup: everything that the last engine step (and any starts or rejections since)
        produced for this session's requests."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            ready, self.ready = self.ready, []
            for stream in ready:
                self._encode(stream)
            ending = (self.commands_ended or self.draining) and not self.running and not self.starting
            out, self.out = self.out, []
            if out or ending:
                await self.send({"type": "http.response.body", "body": b"".join(out), "more_body": not ending})
            if ending:
                return
