"""A real replica server process for tests: `python -m appliance.runtime.server`, sealed with a known credential."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from appliance.runtime.replica_auth import SECRET_ENV, bearer

SECRET = "replica-credential-for-tests"
AUTH = bearer(SECRET)


def start_server(model: Path, *args: str, secret: str | None = SECRET) -> tuple[subprocess.Popen, str]:
    """Start it and wait for READY; returns (process, announced URL). `secret` None: no credential in its
    environment."""
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    if secret is not None:
        env[SECRET_ENV] = secret
    cmd = [sys.executable, "-m", "appliance.runtime.server", "--model", str(model), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY ") or line.startswith("FAILED") or not line:
            break
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"server did not become ready: {line!r}")
    return proc, line.split(" ", 1)[1].strip()


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
