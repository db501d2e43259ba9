"""Django's ASGI handler, with the OpenAI API's hot endpoints served on a short path.

Requests to ``/v1/completions``, ``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` and ``/v1/models``
go straight to the gateway's async views: no middleware chain (each of Django's sync-style middleware costs a hop to a worker thread
per request), no per-request thread context and no request_started/finished signals (the gateway keeps its own
database connections). Everything else (console, admin, admin API, /metrics, other /v1/ routes) takes Django's full
path. The streaming and client-disconnect handling mirror Django's own handler. The ASGI lifespan, which Django does
not handle, starts the key-change listener and writes the queued usage rows at shutdown.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

import django
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse

from .errors import APIError, is_outage, outage
from .responses import LastPart

log = logging.getLogger(__name__)


def _fast_views() -> dict[str, object]:
    from . import embeddings, views

    return {"/v1/completions": views.completions, "/v1/chat/completions": views.chat_completions,
            "/v1/models": views.models, "/v1/responses": views.responses, "/v1/embeddings": embeddings.embeddings}


class GatewayASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.fast_views = _fast_views()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        view = self.fast_views.get(scope.get("path", "")) if scope["type"] == "http" else None
        if view is None or scope.get("root_path"):
            await super().__call__(scope, receive, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            await self.send_response(error_response, send)
            return

        # The view runs in this task (no hop through the event loop's queue before it starts); a watcher task
        # cancels it if the client disconnects, which aborts the engine request.
        current = asyncio.current_task()
        disconnected = finished = False

        async def watch() -> None:
            nonlocal disconnected
            try:
                await self.listen_for_disconnect(receive)
            except RequestAborted:
                if not finished:  # runs only while the view is suspended, so this is exact
                    disconnected = True
                    current.cancel()
            except Exception:
                pass

        watcher = asyncio.create_task(watch())
        try:
            try:
                response: HttpResponse = await view(request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_outage(exc):  # PostgreSQL or Redis restarting: the client may retry, and should
                    log.warning("%s: %s", scope.get("path"), exc)
                    response = outage(exc).response()
                else:
                    log.exception("unhandled error in %s", scope.get("path"))
                    response = APIError(500, "The server had an error while processing your request.").response()
            await self._send(response, send)
        except asyncio.CancelledError:
            if not disconnected or current.uncancel() > 0:
                raise
        finally:
            finished = True
            watcher.cancel()
            body_file.close()

    async def _lifespan(self, receive, send) -> None:
        """Startup: listen for key changes before the first request. Shutdown (the server has finished its
        requests): write the usage rows still queued."""
        from . import invalidation, usage

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                invalidation.listen()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await usage.drain()
                except Exception:
                    log.exception("writing the queued usage records at shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _send(self, response: HttpResponse, send) -> None:
        stream = getattr(response, "raw_stream", None)
        if stream is None:
            await self.send_response(response, send)
            return
        headers = [(k.encode("ascii"), v.encode("latin1")) for k, v in response.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        async with aclosing(stream) as parts:
            async for part in parts:
                if isinstance(part, LastPart):
                    await send({"type": "http.response.body", "body": bytes(part)})
                    return
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def get_application() -> GatewayASGIHandler:
    django.setup(set_prefix=False)
    return GatewayASGIHandler()
