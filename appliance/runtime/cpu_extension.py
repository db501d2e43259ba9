"""The CPU extension (appliance/runtime/csrc/paged_attention.cpp, linear.cpp): built from source once, loaded by path.

    python -m appliance.runtime.cpu_extension build     # what `make venv` runs; prints where the library went

The build uses the machine's g++ through torch.utils.cpp_extension (ninja from requirements.txt) with
`-O3 -march=native -fopenmp`, into build/cpu_kernels/<tag>/ in the checkout (git-ignored; `$APPLIANCE_CPU_KERNELS_DIR`
moves it). The tag hashes the source, the compile flags, torch's and Python's versions and the CPU's instruction-set
flags, so a stale or foreign build is never loaded: it is simply "not built". Loading needs no compiler.

Besides paged decode attention it holds two float32 decoder operations, rotary_write_kv and rms_norm, and a float32
linear layer for few rows (panel_linear, on CPUs with AVX-512); without the extension attention, rotary and RMSNorm
run in PyTorch (kernels.py, model/llama.py) and every linear layer in oneDNN (model/linear.py).

`ops()` returns the loaded module, or None when the engine must use the PyTorch path: `$APPLIANCE_CPU_KERNELS=torch`
forces that, and a missing or unloadable library falls back too. Either way one log line says which path runs and
why, the first time it is asked.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import sys
import sysconfig
import threading
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

ENV_CHOICE = "APPLIANCE_CPU_KERNELS"  # "torch": the PyTorch path; unset or "auto": the extension when built
ENV_DIR = "APPLIANCE_CPU_KERNELS_DIR"
NAME = "appliance_paged_attention"
SOURCE = Path(__file__).parent / "csrc" / "paged_attention.cpp"  # holds the module's bindings
SOURCES = (SOURCE, Path(__file__).parent / "csrc" / "linear.cpp")
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast"]
LDFLAGS = ["-fopenmp"]
DTYPES = (torch.float32, torch.bfloat16)


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def build_tag() -> str:
    """What a built library must match to be loaded: source, flags, torch, Python ABI and the CPU's features."""
    parts = [*(src.read_text() for src in SOURCES), " ".join(CFLAGS + LDFLAGS), torch.__version__,
             sysconfig.get_config_var("EXT_SUFFIX"), _cpu_flags()]
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]


def build_dir() -> Path:
    root = os.environ.get(ENV_DIR) or Path(__file__).resolve().parents[2] / "build" / "cpu_kernels"
    return Path(root) / build_tag()


def library_path() -> Path:
    return build_dir() / f"{NAME}.so"


def build(verbose: bool = False) -> Path:
    """Compile the extension into build_dir() (ninja skips the work when it is up to date); returns the library."""
    from torch.utils.cpp_extension import load

    try:  # requirements.txt's ninja: its binary sits in the environment's bin/, which need not be on PATH
        import ninja

        os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    except ImportError:
        pass
    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    load(NAME, [str(src) for src in SOURCES], extra_cflags=list(CFLAGS),  # copies: load() appends
         extra_ldflags=list(LDFLAGS), build_directory=str(directory), verbose=verbose, is_python_module=True)
    path = library_path()
    if not path.exists():
        raise RuntimeError(f"the build finished but {path} is missing")
    return path


def _load_library(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.resolved = False
        self.module: ModuleType | None = None
        self.reason = ""


_state = _State()


def _resolve() -> tuple[ModuleType | None, str]:
    choice = os.environ.get(ENV_CHOICE, "auto").strip().lower()
    if choice == "torch":
        return None, f"${ENV_CHOICE}=torch"
    if choice not in ("", "auto"):
        return None, f"${ENV_CHOICE}={choice!r} is not 'torch' or 'auto'"
    path = library_path()
    if not path.exists():
        return None, f"not built for this source, torch, Python and CPU ({path} is missing; run " \
                     f"`python -m appliance.runtime.cpu_extension build` or `make venv`)"
    try:
        return _load_library(path), ""
    except Exception as exc:  # any failure to load means the PyTorch path, said once
        return None, f"{path} failed to load: {type(exc).__name__}: {exc}"


def ops() -> ModuleType | None:
    """The loaded extension, or None (the PyTorch path). The first call decides and logs one line."""
    if not _state.resolved:
        with _state.lock:
            if not _state.resolved:
                _state.module, _state.reason = _resolve()
                _state.resolved = True
                if _state.module is None:
                    log.warning("CPU attention: the PyTorch path (index_select + SDPA), not the C++ extension: %s",
                                _state.reason)
                else:
                    log.info("CPU attention: the C++ paged-attention extension (%s)", library_path())
    return _state.module


def status() -> str:
    """'extension' or 'torch: <why>' (resolving on first use)."""
    return "extension" if ops() is not None else f"torch: {_state.reason}"


def reset() -> None:
    """Forget the decision, so the next ops() reads the environment again (tests)."""
    with _state.lock:
        _state.resolved, _state.module, _state.reason = False, None, ""


def main(argv: list[str]) -> int:
    if argv[:1] != ["build"]:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        path = build(verbose="-v" in argv)
    except Exception as exc:  # the engine falls back; the install goes on and says why
        print(f"cpu_extension: build failed, the engine will use the PyTorch attention path: {exc}", file=sys.stderr)
        return 0 if "--allow-failure" in argv else 1
    print(f"cpu_extension: built {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
