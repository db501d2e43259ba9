"""One long-lived asyncio event loop per worker process, on a daemon thread, for the gateway code that jobs call.

The gateway keeps per-loop state (Redis clients, engine connection pools); a fresh ``asyncio.run`` per task would
rebuild it each time and leave the old loop's connections behind. Started lazily, so a prefork child gets its own.
"""
from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Coroutine

_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop[0] != os.getpid() or _loop[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="jobs-loop", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the process's jobs loop and wait for its result (from synchronous code, not from the loop)."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop()).result()
