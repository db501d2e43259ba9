"""Run ORM work from async views on a small dedicated thread pool whose DB connections persist.

Django's own async ORM gives each ASGI request its own thread (and so its own new database connection); the
gateway's few queries per request would then each pay a connection setup. These threads keep theirs open.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from django.db import Error as DatabaseError
from django.db import connection, connections

_wrappers: list = []


def _register_thread() -> None:
    _wrappers.append(connections["default"])


_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-db", initializer=_register_thread)
_write_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-db-write", initializer=_register_thread)


def close_connections() -> None:
    """Close the pool threads' database connections (e.g. before a test database is dropped)."""
    for wrapper in _wrappers:
        raw = wrapper.connection
        if raw is not None:
            raw.close()


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        if connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        return fn(*args, **kwargs)


async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` on a reader thread (lookups: never queued behind writes)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, functools.partial(_call, fn, *args, **kwargs))


async def run_db_write(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` on the writer thread (one, so writes never contend with each other in-process)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_write_pool, functools.partial(_call, fn, *args, **kwargs))
