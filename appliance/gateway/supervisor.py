"""Run the single-node appliance's processes in the foreground and stop them all cleanly together.

Used by ``manage.py serve`` (and ``quickstart``): the web server (uvicorn, ASGI), the node agent that runs the
engine replicas, a Celery worker and Celery beat. Each child runs in its own session (so a Ctrl-C reaches only
this supervisor, which then stops the children in order) and dies with the supervisor if it is killed.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("appliance.serve")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    critical: bool = False  # if it exits, everything stops
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self, cwd: Path) -> None:
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        self.process = subprocess.Popen(self.argv, cwd=cwd, env={**os.environ, **self.env},
                                        start_new_session=True, preexec_fn=_die_with_parent)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, children: list[Child], cwd: Path, stop_timeout_s: float = 15.0) -> None:
        self.children = children
        self.cwd = cwd
        self.stop_timeout_s = stop_timeout_s
        self._stopping = False

    def _on_signal(self, signum, frame) -> None:
        if self._stopping:
            return
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self, on_tick=None) -> int:
        """Start every child and wait until a signal or a critical child's exit; then stop all. Returns an
        exit status. `on_tick()` (optional) is called about every 0.5 s while running."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                child.start(self.cwd)
            while not self._stopping:
                time.sleep(0.5)
                for child in self.children:
                    code = child.process.poll() if child.process else None
                    if code is not None and not self._stopping:
                        log.error("%s exited with status %s", child.name, code)
                        if child.critical:
                            status = code or 1
                            self._stopping = True
                        else:
                            child.process = None
                if on_tick is not None and not self._stopping:
                    on_tick()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def stop(self) -> None:
        """SIGTERM every child (last started first) and let it stop its own processes (the agent its replicas,
        the Celery worker its pool; signalling the whole group would kill those behind their parent's back);
        SIGKILL the process group of a child still running after the timeout."""
        for child in reversed(self.children):
            if child.running:
                child.process.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                try:  # (the child is not reaped yet, so its pid still names its group)
                    os.killpg(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.process.wait()
        log.info("all processes stopped")


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]
