"""A completion request with a list of prompts: one engine request per prompt on the same replica, relayed as one.

The relay treats a `PromptList` like a single engine stream: its events are the members' events with each delta's
`index` renumbered to OpenAI's choice index (prompt k, completion j of n: ``k * n + j``), start events tagged with
their `prompt_index`, and one `done` (tokens summed over the prompts) once every member is done. Closing it closes
every member, which aborts whatever is still running on the replica.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from appliance.runtime.protocol import GenerateRequest

from .engine_client import EngineRejected, EngineUnavailable, engine
from .routing import Target

_END = object()


def member_id(request_id: str, k: int) -> str:
    return f"{request_id}-{k}"


class PromptList:
    def __init__(self, members: list[Any], n: int) -> None:
        self.members = members
        self.n = n
        self._pumps: list[asyncio.Task] = []
        self._closed = False

    @classmethod
    async def open(cls, target: Target, requests: list[GenerateRequest], n: int) -> "PromptList":
        """Open every prompt's engine request; if any is refused, close the others and raise its refusal
        (EngineUnavailable first, so the relay retries the whole list on another replica)."""
        results = await asyncio.gather(*(engine.open(target, r) for r in requests), return_exceptions=True)
        failures = [(k, r) for k, r in enumerate(results) if isinstance(r, BaseException)]
        if not failures:
            return cls(list(results), n)
        for r in results:
            if not isinstance(r, BaseException):
                r.close()
        for _, exc in failures:
            if not isinstance(exc, (EngineRejected, EngineUnavailable)):
                raise exc
        unavailable = [exc for _, exc in failures if isinstance(exc, EngineUnavailable)]
        if unavailable:
            raise unavailable[0]
        k, exc = failures[0]
        param = exc.error.get("param")
        error = {**exc.error, "message": f"prompt[{k}]: {exc.error.get('message') or 'rejected'}",
                 "param": "prompt" if param in ("prompt", "prompt_token_ids") else param}
        raise EngineRejected(exc.status, error)

    async def events(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The members' events, merged as they arrive (EngineFailed from any member ends the whole)."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(k: int, member: Any) -> None:
            try:
                async for events in engine.events(member):
                    queue.put_nowait((k, events))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
                queue.put_nowait((k, exc))
                return
            queue.put_nowait((k, _END))

        loop = asyncio.get_running_loop()
        self._pumps = [loop.create_task(pump(k, m)) for k, m in enumerate(self.members)]
        open_members = len(self.members)
        prompt_tokens = completion_tokens = 0
        done = 0
        metrics: dict[str, Any] = {}
        try:
            while open_members:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                out: list[dict[str, Any]] = []
                for k, events in items:
                    if events is _END:
                        open_members -= 1
                        continue
                    if isinstance(events, BaseException):
                        raise events
                    for event in events:
                        kind = event["type"]
                        if kind == "delta":
                            event["index"] = k * self.n + event["index"]
                            out.append(event)
                        elif kind == "start":
                            prompt_tokens += event["prompt_tokens"]
                            out.append({**event, "prompt_tokens": prompt_tokens, "prompt_index": k})
                        elif kind == "done":
                            done += 1
                            completion_tokens += event["completion_tokens"]
                            metrics = metrics or event.get("metrics") or {}
                            if done == len(self.members):
                                out.append({"type": "done", "prompt_tokens": prompt_tokens,
                                            "completion_tokens": completion_tokens, "metrics": metrics})
                        else:
                            out.append(event)
                if out:
                    yield out
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._pumps:
            task.cancel()
        for member in self.members:
            member.close()
