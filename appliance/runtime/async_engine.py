"""AsyncEngine: an EngineCore stepped by one background thread, with asyncio streams per request.

The event loop never touches the core: new requests and aborts are commands queued to the stepping thread, which
applies them between steps, so the core stays single-threaded. Outputs of a step are handed to each request's event
loop in one `call_soon_threadsafe` per loop. When there is no work the thread sleeps on an Event (no busy-spin).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.runtime.metrics import EngineMetrics
from appliance.runtime.outputs import CompletionOutput, RequestMetrics, RequestOutput
from appliance.runtime.sampling_params import SamplingParams

log = logging.getLogger(__name__)


class EngineDeadError(RuntimeError):
    """The stepping thread has stopped; no request can be served."""


@dataclass
class _Add:
    request_id: str
    prompt: str | list[int]
    params: SamplingParams
    cache_salt: str | None
    priority: int
    done: Future = field(default_factory=Future)


@dataclass
class _Abort:
    request_id: str


@dataclass
class _Call:
    fn: Callable[[Any], Any]
    done: Future = field(default_factory=Future)


class RequestStream:
    """Outputs of one request on its event loop. Iterate it, or take whatever has arrived with `get_batch()`."""

    def __init__(self, request_id: str, engine: "AsyncEngine", loop: asyncio.AbstractEventLoop, n: int = 1) -> None:
        self.request_id = request_id
        self.n = n
        self.finished = False
        self.last: RequestOutput | None = None
        self._engine = engine
        self._loop = loop
        self._items: deque[RequestOutput | BaseException] = deque()
        self._ready = asyncio.Event()
        self._on_ready: Callable[["RequestStream"], None] | None = None

    def _push(self, item: RequestOutput | BaseException) -> None:
        if self.finished:
            return
        self._items.append(item)
        if isinstance(item, BaseException) or item.finished:
            self.finished = True
        if self._on_ready is not None:
            self._on_ready(self)
        else:
            self._ready.set()

    def on_ready(self, callback: Callable[["RequestStream"], None]) -> None:
        """Call `callback(stream)` on the stream's loop whenever outputs arrive, instead of waking a waiter: a
        consumer of many streams (a replica session) then drains them all with `take()` in one wakeup per step.
        Called at once if outputs are already waiting."""
        self._on_ready = callback
        if self._items:
            callback(self)

    def take(self) -> list[RequestOutput]:
        """The outputs that have arrived, without waiting ([] if none); raises the engine's error if the stream
        failed."""
        batch: list[RequestOutput] = []
        while self._items:
            item = self._items.popleft()
            if isinstance(item, BaseException):
                if batch:
                    self._items.appendleft(item)
                    break
                raise item
            batch.append(item)
            self.last = item
        return batch

    async def get_batch(self) -> list[RequestOutput]:
        """Wait for at least one output and return all that arrived; [] once the stream has ended."""
        while not self._items:
            if self.finished:
                return []
            self._ready.clear()
            await self._ready.wait()
        return self.take()

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RequestOutput]:
        while batch := await self.get_batch():
            for out in batch:
                yield out

    def abort(self) -> None:
        """Abort the request (frees its KV blocks after the current step); the stream ends with finish 'abort'."""
        if not self.finished:
            self._engine._abort_on_loop(self)


def _aborted_copy(last: RequestOutput | None, request_id: str, prompt_ids: list[int], n: int) -> RequestOutput:
    if last is None:
        outputs = [CompletionOutput(index=i, finish_reason="abort") for i in range(n)]
        return RequestOutput(request_id, prompt_ids, outputs, RequestMetrics(arrival_time=time.monotonic()))
    outputs = [
        replace(c, new_token_ids=[], new_text="", finish_reason=c.finish_reason or "abort") for c in last.outputs
    ]
    return replace(last, outputs=outputs, prompt_logprobs=None)


class AsyncEngine:
    """Wraps an EngineCore (anything with add_request/abort_request/step/has_unfinished_requests/stats)."""

    def __init__(self, core: Any, metrics: EngineMetrics | None = None) -> None:
        self.core = core
        self.tokenizer = getattr(core, "tokenizer", None)
        self.metrics = metrics or EngineMetrics()
        self._commands: deque[_Add | _Abort | _Call] = deque()
        self._wake = threading.Event()
        self._streams: dict[str, RequestStream] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._dead: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="engine-step", daemon=True)
        self._thread.start()

    # ---- event-loop side -------------------------------------------------------------------------------------

    async def add_request(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        cache_salt: str | None = None,
        priority: int = 0,
    ) -> RequestStream:
        """Admit a request; raises ValueError (naming the field) before any output if the engine rejects it."""
        if self._dead is not None:
            raise EngineDeadError(f"engine stopped: {self._dead}")
        loop = asyncio.get_running_loop()
        stream = RequestStream(request_id, self, loop, params.n)
        with self._lock:
            if request_id in self._streams:
                raise ValueError(f"request_id {request_id!r} is already in use")
            self._streams[request_id] = stream
        cmd = _Add(request_id, prompt, params, cache_salt, priority)
        self._submit(cmd)
        try:
            await asyncio.wrap_future(cmd.done)
        except BaseException as exc:
            with self._lock:
                if self._streams.get(request_id) is stream:
                    del self._streams[request_id]
            if isinstance(exc, asyncio.CancelledError) and not cmd.done.cancelled():
                self._submit(_Abort(request_id))  # cancelled while the add was being applied
            raise
        return stream

    async def generate(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        cache_salt: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]:
        """Stream a request's outputs. Cancelling (or closing) the consumer aborts the request and frees its blocks."""
        stream = await self.add_request(request_id, prompt, params, cache_salt, priority)
        try:
            async for out in stream:
                yield out
        finally:
            stream.abort()

    async def abort(self, request_id: str) -> bool:
        """Abort a request by id; False if no such request is in flight."""
        with self._lock:
            stream = self._streams.get(request_id)
        if stream is None:
            return False
        if stream._loop is asyncio.get_running_loop():
            stream.abort()
        else:
            stream._loop.call_soon_threadsafe(stream.abort)
        return True

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(core) on the stepping thread between steps and return its result."""
        cmd = _Call(fn)
        self._submit(cmd)
        return await asyncio.wrap_future(cmd.done)

    def stats(self) -> Any:
        """The latest EngineStats snapshot (refreshed after every step and whenever the engine goes idle)."""
        return self.metrics.latest_stats

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the stepping thread; in-flight requests end with an EngineDeadError."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _abort_on_loop(self, stream: RequestStream) -> None:
        with self._lock:
            if self._streams.get(stream.request_id) is stream:
                del self._streams[stream.request_id]
        stream._push(_aborted_copy(stream.last, stream.request_id, [], stream.n))
        self._submit(_Abort(stream.request_id))

    def _submit(self, cmd: _Add | _Abort | _Call) -> None:
        self._commands.append(cmd)
        self._wake.set()

    # ---- stepping thread -------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._apply_commands()
                if not self.core.has_unfinished_requests():
                    self.metrics.observe_stats(self.core.stats(), stepped=False)
                    self._wake.wait()
                    self._wake.clear()
                    continue
                try:
                    outputs = self.core.step()
                except Exception as exc:
                    log.exception("engine step failed")
                    self._fail_all(exc)
                    continue
                stats = self.core.stats()
                self.metrics.observe_stats(stats, stepped=stats.last_step_num_seqs > 0)
                self._deliver(outputs)
                if not outputs and not stats.last_step_num_seqs:  # nothing schedulable: don't spin
                    self._wake.wait(0.005)
                    self._wake.clear()
        except BaseException as exc:  # a bug in the loop itself: fail everything, refuse new work
            log.exception("engine loop died")
            self._dead = exc
        finally:
            self._dead = self._dead or EngineDeadError("engine shut down")
            self._fail_all(self._dead if isinstance(self._dead, Exception) else EngineDeadError(str(self._dead)))
            while self._commands:
                cmd = self._commands.popleft()
                if isinstance(cmd, (_Add, _Call)) and cmd.done.set_running_or_notify_cancel():
                    cmd.done.set_exception(EngineDeadError("engine shut down"))

    def _apply_commands(self) -> None:
        while self._commands:
            cmd = self._commands.popleft()
            if isinstance(cmd, _Add):
                if not cmd.done.set_running_or_notify_cancel():
                    continue  # its caller went away before admission
                try:
                    self.core.add_request(cmd.request_id, cmd.prompt, cmd.params, cache_salt=cmd.cache_salt,
                                          priority=cmd.priority)
                except Exception as exc:
                    self.metrics.rejected.inc()
                    cmd.done.set_exception(exc)
                else:
                    cmd.done.set_result(None)
            elif isinstance(cmd, _Abort):
                try:
                    self.core.abort_request(cmd.request_id)
                except (KeyError, ValueError):
                    pass  # already finished
                self.metrics.observe_abort(cmd.request_id)
            elif cmd.done.set_running_or_notify_cancel():
                try:
                    cmd.done.set_result(cmd.fn(self.core))
                except Exception as exc:
                    cmd.done.set_exception(exc)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, RequestOutput]]] = {}
        with self._lock:
            for out in outputs:
                self.metrics.observe_output(out)
                stream = self._streams.get(out.request_id)
                if stream is None:
                    continue
                if out.finished:
                    del self._streams[out.request_id]
                by_loop.setdefault(stream._loop, []).append((stream, out))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_push_all, items)
            except RuntimeError:  # the loop is closed: its consumers are gone
                for stream, _ in items:
                    self._submit(_Abort(stream.request_id))

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            try:
                self.core.abort_request(stream.request_id)
            except Exception:
                pass
            try:
                stream._loop.call_soon_threadsafe(stream._push, exc)
            except RuntimeError:
                pass


def _push_all(items: list[tuple[RequestStream, RequestOutput]]) -> None:
    for stream, out in items:
        stream._push(out)
