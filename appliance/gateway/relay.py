"""One admitted request's trip through an engine replica: open the engine stream, relay it to the client (whole or
as SSE), and settle exactly once however it ends: quota reconciled with the tokens the client received, the
replica's outstanding count released, a usage row written.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from django.http import HttpResponse, StreamingHttpResponse

from appliance.guardrails import gate as guardrails
from appliance.runtime.protocol import GenerateRequest

from . import metrics
from .auth import Caller
from .engine_client import EngineFailed, EngineRejected, EngineUnavailable, engine
from .engine_http import Response
from .engine_session import SessionStream
from .errors import APIError, unavailable
from .params import ParsedRequest
from .prompt_list import PromptList, member_id
from .quotas import Decision, get_quota_backend
from .responses import LastPart, ResponseBuilder
from .routing import Route, Target, router
from .usage import Usage, record

log = logging.getLogger(__name__)
CLIENT_CLOSED = 499
MAX_ATTEMPTS = 3


CONTEXT_CODE = "context_length_exceeded"


def _is_context_error(message: str) -> bool:
    text = message.lower()
    return "context length" in text or "max_model_len" in text or "context window" in text


def _close_opened(opening: asyncio.Task) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def release_target(call, at_finish: bool = False) -> None:
    """Give back `call.target` (a Call, or an embeddings call: anything with `target` and `decision`). At the finish,
    a replica counted at admission is released by the quota finish in the same round trip instead."""
    target, call.target = call.target, None
    if target is None:
        return
    router.undispatched(target)
    ticket = call.decision.ticket
    if ticket is not None and ticket.replica_id == target.replica_id:
        if at_finish:
            return
        ticket.replica_id = None
    try:
        await router.release(target)
    except Exception:
        log.exception("could not release replica %s", target.replica_id)


class ReplicaFailed(Exception):
    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


class Call:
    def __init__(self, caller: Caller, req: ParsedRequest, route: Route, decision: Decision | None,
                 request_id: str, started: float, builder: ResponseBuilder | None = None) -> None:
        """`decision` may come later (set it before run()): a request can be dispatched early, before it.
        `builder` shapes the answer (default: a completion or chat completion, by the request's endpoint)."""
        self.caller = caller
        self.req = req
        self.route = route
        self.decision = decision
        self.request_id = request_id
        self.started = started
        self.builder = builder or ResponseBuilder(req, request_id, int(time.time()))
        self.target: Target | None = None
        self.response: Response | SessionStream | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft_s: float | None = None
        self.done = False
        self.settled = False
        self.early: tuple[Target, asyncio.Task] | None = None  # dispatched before admission answered
        self.usage_sink: list[Usage] | None = None  # where the usage row goes instead of the batched writer
        self.on_complete = None  # async callable run once a response has finished whole, before its end is sent
        self.guard = None  # guardrails.output.OutputGuard: filters the model's text before the client sees it

    def dispatch_early(self, target: Target) -> None:
        """Send the request to `target` now, while its admission is in flight (see quotas.Headroom); run() then
        relays it, or cancel_early() aborts it if admission refuses."""
        router.dispatched(target)
        self.early = (target, asyncio.get_running_loop().create_task(self._open_on(target)))

    def cancel_early(self) -> None:
        """Abort an early dispatch: the engine connection is closed as soon as it answers (an unfinished stream
        closed is an abort there), so the request produces nothing."""
        early, self.early = self.early, None
        if early is None:
            return
        target, opening = early
        router.undispatched(target)
        opening.add_done_callback(_close_opened)
        metrics.EARLY_DISPATCH.labels("aborted").inc()

    def generate_request(self) -> GenerateRequest:
        req = self.req
        return GenerateRequest(request_id=self.request_id, prompt=req.prompt, prompt_token_ids=req.prompt_token_ids,
                               messages=req.messages, tools=req.tools, sampling=req.sampling,
                               cache_salt=f"tenant-{self.caller.tenant_id}",
                               echo_prompt=req.echo and req.prompt_token_ids is not None)

    def _open_on(self, target: Target):
        """Open the engine request(s) on `target`: one, or a PromptList of one per prompt."""
        req = self.req
        if not req.prompts:
            return engine.open(target, self.generate_request())
        salt = f"tenant-{self.caller.tenant_id}"
        requests = [GenerateRequest(request_id=member_id(self.request_id, k), sampling=req.sampling, cache_salt=salt,
                                    echo_prompt=req.echo and isinstance(p, list),
                                    **({"prompt": p} if isinstance(p, str) else {"prompt_token_ids": p}))
                    for k, p in enumerate(req.prompts)]
        return PromptList.open(target, requests, req.n)

    def _events(self):
        if isinstance(self.response, PromptList):
            return self.response.events()
        return engine.events(self.response)

    async def run(self) -> HttpResponse:
        metrics.INFLIGHT.labels(self.req.model).inc()
        try:
            await self._open()
        except APIError as exc:
            await self.settle(exc.status)
            exc.headers = {**self.decision.headers, **exc.headers, "x-request-id": self.request_id}
            return exc.response()
        except BaseException:
            await self.settle(CLIENT_CLOSED)
            raise
        if not self.req.stream:
            return await self._whole()
        stream = self._sse()
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response.raw_stream = stream  # the gateway's ASGI fast path sends it as is
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        self._headers(response)
        return response

    def _headers(self, response: HttpResponse) -> None:
        response["x-request-id"] = self.request_id
        for name, value in self.decision.headers.items():
            response[name] = value

    async def _open(self) -> None:
        route = self.route
        counted = self.decision.replica_id
        early, self.early = self.early, None
        for _ in range(MAX_ATTEMPTS):
            if early is not None:  # already on its way to the replica admission counted
                target, opening = early
                early = None
                router.note_request(route)
                metrics.EARLY_DISPATCH.labels("relayed").inc()
            else:
                target = await router.acquire(route, counted)
                opening = self._open_on(target)
            counted = None
            self.target = target
            try:
                self.response = await opening
                return
            except EngineRejected as exc:
                err = exc.error
                status = exc.status if 400 <= exc.status < 500 else 400
                message = err.get("message") or "The request was rejected."
                code = err.get("code") or (CONTEXT_CODE if _is_context_error(message) else None)
                prompt_field = "input" if self.req.endpoint == "responses" else "messages"
                param = prompt_field if code == CONTEXT_CODE and self.req.messages is not None else err.get("param")
                raise APIError(status, message, param=param, code=code, type=err.get("type"))
            except EngineUnavailable as exc:
                log.warning("replica %s of %s unavailable: %s", target.replica_id, route.name, exc)
                await self._release_target()
                router.forget(route, target)
                fresh = await router.route(route.name, fresh=True)
                if fresh is None:
                    break
                route = fresh
        raise unavailable(f"No replica of `{self.route.name}` could take the request; retry shortly.",
                          retry_after_s=5)

    async def _release_target(self, at_finish: bool = False) -> None:
        await release_target(self, at_finish)

    def _apply(self, event: dict) -> bool:
        """Account for one engine event; True for a delta (tokens to relay)."""
        kind = event["type"]
        if kind == "delta":
            if self.ttft_s is None:
                self.ttft_s = time.perf_counter() - self.started
            self.completion_tokens += len(event["token_ids"])
            return True
        if kind == "start":
            self.prompt_tokens = event["prompt_tokens"]
            if event.get("prompt_text") is not None:
                self.builder.set_echo(event.get("prompt_index", 0), event["prompt_text"])
        elif kind == "done":
            self.prompt_tokens, self.completion_tokens = event["prompt_tokens"], event["completion_tokens"]
            self.done = True
        elif kind == "error":
            error = event.get("error") or {}
            status = event.get("status", 500)
            raise ReplicaFailed(f"The model replica failed while generating: {error.get('message') or 'error'}",
                                status if 400 <= status < 500 else 503)
        return False

    async def _whole(self) -> HttpResponse:
        status = 200
        try:
            async for events in self._events():
                deltas = [event for event in events if self._apply(event)]
                for event in deltas if self.guard is None else self.guard.feed(deltas):
                    self.builder.add(event)
                if self.guard is not None and self.guard.blocked:
                    await self._abort()  # the output was blocked: the engine stops generating
                    break
            if not self.done and not (self.guard is not None and self.guard.blocked):
                raise ReplicaFailed("The model replica ended the response early.")
        except (ReplicaFailed, EngineFailed) as exc:
            status = getattr(exc, "status", 503)
            await self._abort()
            message = str(exc) if isinstance(exc, ReplicaFailed) else f"The model replica failed: {exc}"
            await self.settle(status)
            headers = {**self.decision.headers, "x-request-id": self.request_id,
                       **({"retry-after": "1"} if status >= 500 else {})}
            return APIError(status, message, headers=headers).response()
        except BaseException:
            await self._abort()
            await self.settle(CLIENT_CLOSED)
            raise
        await self.settle(status)
        if self.on_complete is not None:
            await self.on_complete()
        body = self.builder.whole(self.prompt_tokens, self.completion_tokens)
        response = HttpResponse(json.dumps(body, ensure_ascii=False), content_type="application/json")
        self._headers(response)
        return response

    async def _sse(self):
        status = CLIENT_CLOSED
        chunk, apply = self.builder.chunk, self._apply
        try:
            try:
                head = self.builder.stream_head()
                if head:
                    yield head
                guard = self.guard
                async for events in self._events():
                    if guard is None:
                        out = "".join([chunk(event) for event in events if apply(event)])
                    else:
                        out = "".join([chunk(event) for event in guard.feed([e for e in events if apply(e)])])
                    if out:  # a tool call's text may be held back: no chunk yet
                        yield out.encode()
                    if guard is not None and guard.blocked:
                        await self._abort()  # the output was blocked: the engine stops generating
                        break
                if not self.done and not (guard is not None and guard.blocked):
                    raise ReplicaFailed("The model replica ended the stream early.")
            except (ReplicaFailed, EngineFailed) as exc:
                status = getattr(exc, "status", 503)
                await self._abort()
                message = str(exc) if isinstance(exc, ReplicaFailed) else f"The model replica failed: {exc}"
                await self.settle(status)
                yield LastPart(self.builder.stream_error(APIError(status, message).body()))
                return
            status = 200
            await self.settle(status)  # the quota is released before the client sees the end of the stream
            if self.on_complete is not None:
                await self.on_complete()
            yield LastPart(self.builder.stream_tail(self.prompt_tokens, self.completion_tokens))
        finally:
            if not self.settled:
                await self._abort()
                await self.settle(status)

    async def _abort(self) -> None:
        response, self.response = self.response, None
        if response is None:
            return
        response.close()  # on a session, this sends the abort
        if not self.done and self.target is not None and not isinstance(response, (SessionStream, PromptList)):
            await engine.abort(self.target, self.request_id)

    async def settle(self, status: int) -> None:
        """Release everything the request held and record its usage; runs once."""
        if self.settled:
            return
        self.settled = True
        try:
            if self.response is not None:
                self.response.close()
                self.response = None
            await self._release_target(at_finish=True)
            if self.decision.ticket is not None:
                await get_quota_backend().finish(self.decision.ticket, self.prompt_tokens + self.completion_tokens)
        except (Exception, asyncio.CancelledError):
            log.exception("settling %s", self.request_id)
        finally:
            metrics.INFLIGHT.labels(self.req.model).dec()
        if self.guard is not None:
            await guardrails.finish(self.guard, self.caller, self.req.model, self.request_id)
        await record(Usage(self.caller.tenant_id, self.caller.key_id, self.req.model, self.request_id,
                           self.req.endpoint, status, self.prompt_tokens, self.completion_tokens,
                           time.perf_counter() - self.started, self.ttft_s, self.decision.waited_s), self.usage_sink)
