"""One engine replica as an OS process: launch with its core assignment, wait for READY, warm up, stop."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from appliance.runtime.replica_auth import SECRET_ENV, bearer, new_secret

PR_SET_PDEATHSIG = 1
CONTROL_PLANE_SECRETS = ("SECRET_KEY", "API_KEY_HMAC_SECRET", "APPLIANCE_METRICS_TOKEN")  # a replica needs none


def core_env(device: str, cores: list[int]) -> dict[str, str]:
    """The environment that confines a replica to its cores: NeuronCores, GPUs, or nothing on CPU."""
    if device == "neuron" and cores:
        lo, hi = min(cores), max(cores)
        return {"NEURON_RT_VISIBLE_CORES": f"{lo}-{hi}" if hi > lo else str(lo)}
    if device == "cuda" and cores:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(c) for c in cores)}
    return {}


def engine_flags(engine_args: dict) -> list[str]:
    flags: list[str] = []
    for key, value in sorted((engine_args or {}).items()):
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags += [flag, "true" if value else "false"]
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def _die_with_parent() -> None:  # runs in the child between fork and exec; its own session keeps Ctrl-C off it
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class ReplicaSpec:
    replica_id: int
    model_dir: str
    device: str
    cores: list[int]
    server_module: str = "appliance.runtime.server"
    engine_args: dict = field(default_factory=dict)
    served_model_name: str = ""
    host: str = "127.0.0.1"
    log_path: Path | None = None


class ReplicaProcess:
    """A launched engine process. Launch from the agent's main thread (PDEATHSIG follows the forking thread)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.secret = new_secret()  # the replica's credential: in its environment, never its argv (/proc/*/cmdline)
        self.port: int | None = None  # the server picks a free port and names it in its READY line
        self.url: str | None = None
        self.ready = threading.Event()
        self.ready_monotonic: float | None = None  # when the READY line came
        self.first_token_monotonic: float | None = None  # when the warm-up's first token came
        self.load_phases: dict[str, float] = {}  # the server's own, from /health
        self.tail: deque[str] = deque(maxlen=40)
        env = {**{k: v for k, v in os.environ.items() if k not in CONTROL_PLANE_SECRETS},
               **core_env(spec.device, spec.cores), "PYTHONUNBUFFERED": "1", SECRET_ENV: self.secret}
        cmd = [sys.executable, "-m", spec.server_module, "--model", spec.model_dir, "--device", spec.device,
               "--host", spec.host, "--port", "0",
               *(["--served-model-name", spec.served_model_name] if spec.served_model_name else []),
               *engine_flags(spec.engine_args)]
        self.command = cmd
        self.env_assigned = core_env(spec.device, spec.cores)
        self._log = open(spec.log_path, "ab") if spec.log_path else None
        self.started_monotonic = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        threading.Thread(target=self._read_output, daemon=True, name=f"replica-{spec.replica_id}-out").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if self._log:
                self._log.write(raw)
                self._log.flush()
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if not self.ready.is_set() and line.startswith("READY "):
                self.url = line.split(" ", 1)[1].strip()
                self.port = int(self.url.rsplit(":", 1)[1].split("/")[0]) if self.url.startswith("http") else None
                self.ready_monotonic = time.monotonic()
                self.ready.set()
        if self._log:
            self._log.close()

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def wait_ready(self, timeout: float) -> str:
        """Block until the process prints `READY <url>`; raise RuntimeError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with code {self.proc.returncode} before READY: {self.last_output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"engine printed no READY line within {timeout:.0f}s: {self.last_output()}")
        if not self.url or not self.url.startswith("http://"):
            raise RuntimeError(f"engine announced {self.url!r}; the agent expects READY http://HOST:PORT")
        return self.url

    def warm_up(self, timeout: float = 60.0) -> float:
        """Send a 1-token generate (an encoder replica: one embedding); return seconds from process start to that
        first token (the cold start)."""
        import httpx

        from appliance.runtime.protocol import GenerateRequest, decode_event

        headers = bearer(self.secret)
        health = httpx.get(f"{self.url}/health", headers=headers, timeout=timeout).json()
        self.load_phases = {k: float(v) for k, v in (health.get("load_phases") or {}).items()}
        if health.get("kind") == "encoder":
            return self._warm_up_encoder(timeout)
        request = GenerateRequest(request_id=f"warmup-{uuid.uuid4().hex[:8]}", prompt="Hello",
                                  sampling={"max_tokens": 1, "temperature": 0.0})
        with httpx.Client(timeout=timeout, headers=headers) as client:
            with client.stream("POST", f"{self.url}/generate", json=request.to_dict()) as response:
                if response.status_code != 200:
                    body = response.read()[:300]
                    raise RuntimeError(f"warm-up generate answered HTTP {response.status_code}: {body!r}")
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = decode_event(line)
                    if event.type == "error":
                        raise RuntimeError(f"warm-up generate failed: {json.dumps(event.error)}")
                    if event.type == "delta" and event.token_ids:
                        self.first_token_monotonic = time.monotonic()
                        return self.first_token_monotonic - self.started_monotonic
                    if event.type == "done":
                        break
        raise RuntimeError("warm-up generate finished without producing a token")

    def _warm_up_encoder(self, timeout: float) -> float:
        import httpx

        body = {"request_id": f"warmup-{uuid.uuid4().hex[:8]}", "input": ["Hello"]}
        response = httpx.post(f"{self.url}/embed", json=body, headers=bearer(self.secret), timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"warm-up embed answered HTTP {response.status_code}: {response.content[:300]!r}")
        self.first_token_monotonic = time.monotonic()
        return self.first_token_monotonic - self.started_monotonic

    def start_phases(self, artifact_fetch_s: float = 0.0) -> dict[str, float]:
        """Seconds per phase of this start, once warmed up: artifact_fetch (done by the agent before launch),
        process_start (interpreter start to bind), the server's load phases (import_runtime: torch and the engine;
        weight_load, or on Neuron compile_cache_hit), warm_up (READY to the first token) and first_ready (all of it: launch to first token)."""
        ready = self.ready_monotonic - self.started_monotonic
        phases = {"artifact_fetch": artifact_fetch_s, "process_start": max(0.0, ready - sum(self.load_phases.values())),
                  **self.load_phases, "warm_up": self.first_token_monotonic - self.ready_monotonic,
                  "first_ready": artifact_fetch_s + self.first_token_monotonic - self.started_monotonic}
        return {name: round(seconds, 3) for name, seconds in phases.items()}

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def last_output(self, lines: int = 8) -> str:
        return " | ".join(list(self.tail)[-lines:]) or "(no output)"
