"""Runs an EncoderModel on one background thread, batching the requests that arrive together: while one batch
runs, the requests that come in queue up, and the next batch takes all of them (sorted by length and cut into
forwards of at most `max_batch_tokens` padded tokens)."""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .metrics import EncoderMetrics
from .model import EncoderModel


@dataclass
class _Job:
    inputs: list[list[int]]
    dimensions: int | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class EncoderRunner:
    def __init__(self, model: EncoderModel, metrics: EncoderMetrics, max_batch_tokens: int = 8192) -> None:
        self.model = model
        self.metrics = metrics
        self.max_batch_tokens = max(max_batch_tokens, model.info.max_input_tokens)
        self.num_in_flight = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="encoder")
        self._thread.start()

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None) -> list[np.ndarray]:
        """One vector per input (checked already with model.check / check_dimensions)."""
        loop = asyncio.get_running_loop()
        job = _Job(inputs, dimensions, loop, loop.create_future())
        self.num_in_flight += 1
        self.metrics.waiting.labels(self.metrics.model_name).inc()
        self._queue.put(job)
        try:
            return await asyncio.shield(job.future)  # a cancelled caller leaves the batch to finish without it
        finally:
            self.num_in_flight -= 1

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, tokens = [first], sum(map(len, first.inputs))
        while tokens < 4 * self.max_batch_tokens:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
            tokens += sum(map(len, job.inputs))
        return jobs

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            m, name = self.metrics, self.metrics.model_name
            m.waiting.labels(name).dec(len(jobs))
            m.batch_requests.labels(name).observe(len(jobs))
            started = time.perf_counter()
            for job in jobs:
                m.queue_time.labels(name).observe(started - job.arrived)
            try:
                results = self._forward(jobs)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                for job in jobs:
                    job.loop.call_soon_threadsafe(_resolve, job.future, None, exc)
                continue
            done = time.perf_counter()
            for job, vectors in zip(jobs, results):
                m.requests.labels(name).inc()
                m.inputs.labels(name).inc(len(job.inputs))
                m.tokens.labels(name).inc(sum(map(len, job.inputs)))
                m.latency.labels(name).observe(done - job.arrived)
                job.loop.call_soon_threadsafe(_resolve, job.future, vectors, None)

    def _forward(self, jobs: list[_Job]) -> list[list[np.ndarray]]:
        items = [(j, i, ids, job.dimensions) for j, job in enumerate(jobs) for i, ids in enumerate(job.inputs)]
        items.sort(key=lambda item: len(item[2]))
        results: list[list[np.ndarray | None]] = [[None] * len(job.inputs) for job in jobs]
        start = 0
        while start < len(items):
            end = start + 1
            while end < len(items) and len(items[end][2]) * (end + 1 - start) <= self.max_batch_tokens:
                end += 1
            chunk = items[start:end]
            vectors = self.model.embed([ids for _, _, ids, _ in chunk], [dim for _, _, _, dim in chunk])
            self.metrics.forwards.labels(self.metrics.model_name).inc()
            self.metrics.batch_inputs.labels(self.metrics.model_name).observe(len(chunk))
            for (j, i, _, _), vec in zip(chunk, vectors):
                results[j][i] = vec
            start = end
        return results


def _resolve(future: asyncio.Future, value, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
