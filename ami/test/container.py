"""The provisioned root booted as a machine: systemd-nspawn --boot with its own network namespace (loopback only, so
its PostgreSQL, Redis and nginx ports never meet the host's), and commands run inside it with nsenter."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Container:
    root: Path
    console_log: Path
    process: subprocess.Popen | None = None
    leader: int = 0
    boots: int = field(default=0)

    def boot(self, timeout_s: float = 180) -> str:
        """Boot systemd in the root and wait until it settles; returns `systemctl is-system-running`'s answer."""
        self.boots += 1
        log = open(self.console_log, "ab")
        log.write(f"\n===== boot {self.boots} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "--boot", "--private-network", "--register=no", "--keep-unit",
             "--console=read-only", "-q"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # /tmp stays the root's own, on disk, as on an EC2 instance (nspawn mounts a tmpfs there otherwise), so
            # 40-services.sh finds /tmp/ami where the build put it.
            env={**os.environ, "SYSTEMD_NSPAWN_TMPFS_TMP": "0"})
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.leader:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.process.returncode}; see {self.console_log}")
            if time.monotonic() > deadline:
                raise TimeoutError("systemd-nspawn started no init process")
            self.leader = _child_of(self.process.pid)
            time.sleep(0.2)
        while True:
            state = self.run("systemctl", "is-system-running", "--wait", timeout=max(1, deadline - time.monotonic()),
                             check=False).stdout.strip()
            if state in {"running", "degraded"}:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"the machine did not finish booting: {state}")
            time.sleep(0.5)

    def run(self, *argv: str, timeout: float = 120, check: bool = True, user: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the machine (all its namespaces), with a clean environment."""
        if not self.leader:
            raise RuntimeError("the machine is not running")
        environment = {"PATH": PATH, "LANG": "C.UTF-8", **(env or {})}
        prefix = ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
                  *(f"{k}={v}" for k, v in environment.items())]
        if user:
            prefix += ["/usr/sbin/runuser", "-u", user, "--"]
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}"
                               f"{result.stderr[-3000:]}")
        return result

    def poweroff(self, timeout_s: float = 120) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.run("systemctl", "poweroff", check=False, timeout=30)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process, self.leader = None, 0


def _child_of(pid: int) -> int:
    """The machine's init: the child of systemd-nspawn that runs systemd (an intermediate child comes and goes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return next((int(c) for c in children if Path(f"/proc/{c}/comm").read_text().strip() == "systemd"), 0)
    except OSError:
        return 0
