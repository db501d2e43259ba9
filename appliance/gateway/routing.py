"""Which engine replica serves a request: the deployment behind a model id, its READY replicas (cached for a
moment), least outstanding requests first, and waking a deployment that has none (scale from zero).

Routes are cached per process for GATEWAY_ROUTE_CACHE_S and re-read in the background while in use; after a quiet
spell the first request still uses the cached route (up to GATEWAY_ROUTE_STALE_S old) while it is re-read
(cache.py). A replica that has gone meanwhile refuses the connection and the request is retried on a fresh route.
Outstanding requests per replica live in Redis (keys.replica_outstanding) so that every gateway process routes
on the same counts and the autoscaler can read them. Without Redis they are kept in-process.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from . import conf, keys
from .cache import RefreshingCache
from .db import run_db, run_db_write
from .errors import APIError, unavailable


@dataclass(frozen=True)
class Target:
    replica_id: int
    host: str
    port: int | None
    socket_path: str = ""
    secret: str = field(default="", repr=False)  # the replica's credential (Replica.secret; runtime/replica_auth.py)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}" if not self.socket_path else "http://engine"


@dataclass
class Route:
    deployment_id: int
    name: str  # the model id tenants use (Deployment.name)
    model_name: str  # the catalog Model it serves: what API keys are allowed by
    context_length: int
    created: int
    targets: list[Target]
    tool_parser: str = ""  # tools/: how the model writes tool calls ("" none known)
    kind: str = "generate"  # "embedding" for an encoder model (served at /v1/embeddings only)
    guardrail: Any = None  # the deployment's guardrails.policy.Policy, if it has one
    tokenizer: str = ""  # where the model's tokenizer is (guardrails count prompt tokens with it)
    failure: str = ""  # the deployment failed (Deployment.status_message): requests get a 503 saying so at once


def _load_route(name: str) -> Route | None:
    from appliance.catalog.models import Deployment, Replica

    dep = (Deployment.objects.filter(name=name, is_active=True).select_related("model_version__model").first())
    if dep is None:
        return None
    replicas = Replica.objects.filter(deployment=dep, state=Replica.State.READY).order_by("index")
    targets = [Target(r.id, r.host, r.port, r.socket_path, r.secret) for r in replicas if r.port or r.socket_path]
    from .tools import tool_parser_name

    from appliance.guardrails.policy import deployment_policy

    model = dep.model_version.model
    parser = tool_parser_name(model.tool_parser, model.family, (dep.model_version.config or {}).get("model_type", ""))
    failure = (dep.status_message or "failed") if dep.status == Deployment.Status.FAILED and not targets else ""
    return Route(dep.id, dep.name, model.name, dep.model_version.context_length,
                 int(dep.created_at.timestamp()), targets, parser, _kind(dep.model_version), deployment_policy(dep.id),
                 dep.model_version.tokenizer_uri or dep.model_version.source_uri, failure)


def _kind(version) -> str:
    from appliance.runtime.encoder import is_encoder_model

    return "embedding" if is_encoder_model(version.config, version.source_uri) else "generate"


def _list_routes(model_names: frozenset[str], name: str | None) -> list[tuple]:
    from appliance.catalog.models import Deployment

    rows = Deployment.objects.filter(model_version__model__name__in=model_names, is_active=True)
    if name is not None:
        rows = rows.filter(name=name)
    return list(rows.order_by("name").values_list("name", "created_at", "status", "status_message"))


def _wake(deployment_id: int) -> None:
    from appliance.catalog.models import Deployment

    Deployment.objects.filter(id=deployment_id).update(
        desired_replicas=Greatest(F("desired_replicas"), 1), last_request_at=timezone.now())


def _touch(deployment_id: int) -> None:
    from appliance.catalog.models import Deployment

    Deployment.objects.filter(id=deployment_id).update(last_request_at=timezone.now())


_ACQUIRE_LUA = """
local best, best_v = 1, nil
for i = 1, #KEYS - 1 do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if best_v == nil or v < best_v then best, best_v = i, v end
end
redis.call('INCR', KEYS[best])
redis.call('EXPIRE', KEYS[best], tonumber(ARGV[1]))
redis.call('SET', KEYS[#KEYS], ARGV[2], 'EX', 86400)
return best
"""

_RELEASE_LUA = """
if redis.call('DECR', KEYS[1]) < 0 then redis.call('SET', KEYS[1], 0) end
return 1
"""


class Router:
    def __init__(self) -> None:
        self._routes: RefreshingCache[Route | None] = RefreshingCache("routes", conf.route_cache_s, cache_none=False,
                                                                       stale_s=conf.route_stale_s)
        # this process's requests in flight per replica: without Redis, the replicas' outstanding counts
        self._here: dict[int, int] = {}
        self._touched: dict[int, float] = {}
        self._scripts: dict[int, tuple] = {}
        self._tasks: set[asyncio.Task] = set()
        self._suspect: dict[int, float] = {}  # replica id -> until when it is skipped (refused a connection)

    async def route(self, name: str, fresh: bool = False) -> Route | None:
        """The deployment serving model id `name`, or None if there is none (or it is inactive)."""
        if fresh:
            return await self._routes.reload(name, lambda: self._load(name))
        return await self._routes.get(name, lambda: self._load(name))

    async def _load(self, name: str) -> Route | None:
        route = await run_db(_load_route, name)
        if route is not None and self._suspect:
            now = time.monotonic()
            self._suspect = {rid: until for rid, until in self._suspect.items() if until > now}
            route.targets = [t for t in route.targets if t.replica_id not in self._suspect]
        return route

    async def list_models(self, model_names: frozenset[str], name: str | None = None) -> list[tuple[str, int, str, str]]:
        """(model id, created, status, status message) of the active deployments serving any of these models."""
        rows = await run_db(_list_routes, model_names, name)
        return [(name, int(created.timestamp()), status, message) for name, created, status, message in rows]

    def forget(self, route: Route, target: Target, for_s: float = 5.0) -> None:
        """A replica refused the connection: send it nothing for a few seconds (its node agent will restart it
        or mark it failed), whatever the database says meanwhile."""
        self._suspect[target.replica_id] = time.monotonic() + for_s
        route.targets = [t for t in route.targets if t != target]
        self._routes.pop(route.name)

    def _redis_scripts(self):
        from .redis_client import get_script_client

        client = get_script_client()
        entry = self._scripts.get(id(client))
        if entry is None or entry[0] is not client:
            entry = (client, client.register_script(_ACQUIRE_LUA), client.register_script(_RELEASE_LUA))
            self._scripts[id(client)] = entry
        return entry[1], entry[2]

    def pick_local(self, route: Route) -> Target:
        """The READY replica with the fewest of this process's requests in flight (route.targets must not be
        empty): for dispatching before admission has picked one across processes."""
        return min(route.targets, key=lambda t: self._here.get(t.replica_id, 0))

    def dispatched(self, target: Target) -> None:
        self._here[target.replica_id] = self._here.get(target.replica_id, 0) + 1

    def undispatched(self, target: Target) -> None:
        left = self._here.get(target.replica_id, 1) - 1
        if left > 0:
            self._here[target.replica_id] = left
        else:
            self._here.pop(target.replica_id, None)

    async def acquire(self, route: Route, counted: int | None = None) -> Target:
        """Pick a READY replica (waking the deployment and waiting, bounded, if none) and count the request.
        `counted`: the replica admission already picked and counted (Redis backend), used as is. The caller
        gives the target back with release() (or, if admission counted it, the quota finish) and undispatched()."""
        if counted is not None:
            for target in route.targets:
                if target.replica_id == counted:
                    self.note_request(route)
                    self.dispatched(target)
                    return target
        if not route.targets:
            route = await self._wait_for_replica(route)
        self.note_request(route)
        if settings.REDIS_URL:
            acquire, _ = self._redis_scripts()
            names = [keys.replica_outstanding(t.replica_id) for t in route.targets]
            names.append(keys.deployment_last_request(route.deployment_id))
            best = await acquire(keys=names, args=[int(conf.engine_read_timeout_s()) * 3, f"{time.time():.3f}"])
            target = route.targets[int(best) - 1]
        else:
            target = self.pick_local(route)
        self.dispatched(target)
        return target

    async def release(self, target: Target) -> None:
        """Give back the Redis count of a target acquire() counted (without Redis, undispatched() is all)."""
        if settings.REDIS_URL:
            _, release = self._redis_scripts()
            await release(keys=[keys.replica_outstanding(target.replica_id)])

    def note_request(self, route: Route) -> None:
        """Mark the deployment as just used (Deployment.last_request_at, written at most every few seconds)."""
        now = time.monotonic()
        if self._touched.get(route.deployment_id, 0) + conf.last_request_write_s() > now:
            return
        self._touched[route.deployment_id] = now
        task = asyncio.get_running_loop().create_task(run_db_write(_touch, route.deployment_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_replica(self, route: Route) -> Route:
        if route.failure:
            raise failed(route)
        await run_db_write(_wake, route.deployment_id)
        self._touched[route.deployment_id] = time.monotonic()
        deadline = time.monotonic() + conf.cold_start_timeout_s()
        delay = 0.1
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            fresh = await self.route(route.name, fresh=True)
            if fresh is None:
                break
            if fresh.targets:
                return fresh
            if fresh.failure:
                raise failed(fresh)
        raise unavailable(f"The model `{route.name}` is starting and has no replica ready yet; retry shortly.",
                          retry_after_s=10)


def failed(route: Route) -> APIError:
    """The 503 for a deployment that failed (it will not come up by itself: an operator must redeploy it)."""
    return unavailable(f"The model `{route.name}` failed and cannot serve requests: {route.failure}",
                       retry_after_s=60)


router = Router()
