"""Attributing a step's wall time to named stages, for the step profile (``python -m appliance.runtime.profiling``).

Code on the hot path calls ``clock.mark(name)`` after each stage; the default ``NULL_CLOCK`` does nothing, so an
unprofiled step pays one no-op method call per stage. A ``StageClock`` charges the time since the previous mark to
``name``; on CUDA pass ``sync=torch.cuda.synchronize`` so that queued kernels are charged to the stage that
queued them. ``timer=time.process_time`` charges CPU time (all threads of the process) instead of wall time: on a
machine shared with other busy processes it measures the work, not the wait for a core.
"""
from __future__ import annotations

import time
from collections.abc import Callable


class NullClock:
    def start(self) -> None:
        pass

    def mark(self, name: str) -> None:
        pass


NULL_CLOCK = NullClock()


class StageClock(NullClock):
    def __init__(self, sync: Callable[[], None] | None = None, timer: Callable[[], float] = time.perf_counter) -> None:
        self.sync = sync
        self.timer = timer
        self.totals: dict[str, float] = {}
        self._last = timer()

    def start(self) -> None:
        """Begin a timed region: time before this call is charged to nothing."""
        if self.sync:
            self.sync()
        self._last = self.timer()

    def mark(self, name: str) -> None:
        if self.sync:
            self.sync()
        now = self.timer()
        self.totals[name] = self.totals.get(name, 0.0) + now - self._last
        self._last = now

    def reset(self) -> None:
        self.totals.clear()
        self.start()
