"""Is the Neuron kernel driver there for the running kernel? Loaded (/sys/module/neuron) or at least built
(`modinfo neuron` finds it under /lib/modules/$(uname -r)). First boot builds and loads it (ami/scripts/firstboot.sh);
this only reports what it finds, so a node page can say why a node offers no NeuronCores."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LOADED = "loaded"
NOT_LOADED = "installed, not loaded"
MISSING = "missing"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DriverStatus:
    state: str  # LOADED, NOT_LOADED, MISSING or UNKNOWN
    kernel: str
    detail: str = ""
    version: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def driver_status(module: str = "neuron", sys_module_dir: Path = Path("/sys/module"),
                  timeout_s: float = 10.0) -> DriverStatus:
    kernel = os.uname().release
    modinfo = shutil.which("modinfo") or next(
        (p for p in ("/usr/sbin/modinfo", "/sbin/modinfo") if os.access(p, os.X_OK)), None)
    if modinfo is None:
        if (sys_module_dir / module).is_dir():
            return DriverStatus(LOADED, kernel, detail=f"{sys_module_dir / module} exists; modinfo not found")
        return DriverStatus(UNKNOWN, kernel, detail="modinfo not found: cannot tell whether the driver is installed")
    try:
        out = subprocess.run([modinfo, "-F", "version", module], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DriverStatus(UNKNOWN, kernel, detail=f"modinfo {module} failed: {exc}")
    if out.returncode != 0:
        why = (out.stderr or out.stdout).strip() or f"exit status {out.returncode}"
        return DriverStatus(MISSING, kernel, detail=f"no {module} driver for kernel {kernel}: {why}")
    version = out.stdout.strip()
    if (sys_module_dir / module).is_dir():
        return DriverStatus(LOADED, kernel, version=version)
    return DriverStatus(NOT_LOADED, kernel, version=version,
                        detail=f"the {module} module is built for {kernel} but not loaded (modprobe {module})")
