"""A change to an API key, a tenant or the model catalog reaches every gateway process at once, instead of after
the auth cache's TTL (GATEWAY_AUTH_CACHE_S): a revoked key, a suspended tenant or a narrowed model list stops
working within milliseconds of the commit, and new quotas apply to the next request.

The control plane (any process that saves those rows: admin API, console, Django admin, management commands)
announces each committed change on a Redis pub/sub channel and clears its own process's cache. Every gateway
process listens on that channel from its startup (the ASGI lifespan; a server without lifespan support gets the
TTL alone) and clears its cached callers when a message arrives, and when its subscription (re)connects, since it
may have missed one meanwhile.

Without Redis (the laptop defaults) there is no channel: a process clears only its own cache, and the TTL bounds
what other processes see. If Redis is unreachable the announcement is dropped with a warning and the TTL again
bounds staleness; the change itself is already committed.
"""
from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from . import keys
from .auth import forget_all as forget_callers

log = logging.getLogger(__name__)
RESUBSCRIBE_S = 1.0

_publisher = None
_listeners: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}


def announce() -> None:
    """Tell every gateway process (and this one) that keys, tenants or models changed; call after the commit."""
    global _publisher
    forget_callers()
    if not settings.REDIS_URL:
        return
    import redis

    try:
        if _publisher is None:
            _publisher = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _publisher.publish(keys.callers_changed(), b"1")
    except (redis.RedisError, OSError):
        log.warning("could not announce a key/tenant change on Redis; gateways see it within their auth cache's "
                    "TTL", exc_info=True)


def announce_on_commit(sender=None, created: bool = False, **_) -> None:
    """Signal receiver: announce once the surrounding transaction commits (at once outside one). A new key or
    tenant is in no cache yet; a new model is (in the model lists of tenants that may call every model)."""
    from django.db import transaction

    from appliance.catalog.models import Model

    if created and sender is not Model:
        return
    transaction.on_commit(announce)


def listen() -> None:
    """Start this event loop's listener if it has none: the web server's loop, at its startup (ASGI lifespan). Not
    for the short-lived loops of async_to_sync: one lives only as long as its call."""
    if not settings.REDIS_URL:
        return
    loop = asyncio.get_running_loop()
    entry = _listeners.get(id(loop))
    if entry is not None and entry[0] is loop and not entry[1].done():
        return
    for key in [k for k, (lp, _) in _listeners.items() if lp.is_closed()]:
        del _listeners[key]
    _listeners[id(loop)] = (loop, loop.create_task(_listen()))


async def _listen() -> None:
    import redis
    import redis.asyncio as aioredis

    channel = keys.callers_changed()
    while True:
        client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            forget_callers()  # anything announced while this process was not subscribed
            async for message in pubsub.listen():
                if message is not None and message.get("type") == "message":
                    forget_callers()
        except (redis.RedisError, OSError) as exc:
            if asyncio.current_task().cancelling():
                return  # (redis-py may turn a cancellation into a connection error)
            log.warning("the key/tenant change subscription failed (%s); resubscribing in %ss", exc, RESUBSCRIBE_S)
        finally:
            await pubsub.aclose()
            await client.aclose()
        await asyncio.sleep(RESUBSCRIBE_S)


def connect_signals() -> None:
    """Announce every committed change to what the gateway caches about a caller (auth.Caller)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from appliance.catalog.models import Model
    from appliance.tenancy.models import APIKey, Tenant

    for model in (APIKey, Tenant, Model):
        post_save.connect(announce_on_commit, sender=model, dispatch_uid=f"callers-changed-save-{model.__name__}")
        post_delete.connect(announce_on_commit, sender=model, dispatch_uid=f"callers-changed-del-{model.__name__}")
    for through in (APIKey.allowed_models.through, Tenant.allowed_models.through):
        m2m_changed.connect(_on_m2m, sender=through, dispatch_uid=f"callers-changed-m2m-{through.__name__}")


def _on_m2m(action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        announce_on_commit(sender=kwargs.get("sender"))
