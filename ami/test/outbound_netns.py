"""A network namespace with a way out and no way in: slirp4netns (user-mode NAT, Debian's package) gives it Internet
access for apt and pip, and --disable-host-loopback keeps the host's own services (PostgreSQL on 127.0.0.1:5432)
out of sight, so that what the scripts install sees the ports of a fresh machine (pg_createcluster takes 5432)."""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class OutboundNetns:
    holder: subprocess.Popen | None = None
    slirp: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        time.sleep(0.3)
        self.slirp = subprocess.Popen(["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                                       str(self.holder.pid), "tap0"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while "tap0" not in self.run(["ip", "-br", "addr"]).stdout:
            if time.monotonic() > deadline or self.slirp.poll() is not None:
                raise RuntimeError("slirp4netns did not bring up the namespace's network")
            time.sleep(0.2)

    def prefix(self) -> list[str]:
        """The command prefix that runs a command in this namespace."""
        if self.holder is None:
            raise RuntimeError("the namespace is not started")
        return ["nsenter", "-t", str(self.holder.pid), "-n"]

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix(), *argv], capture_output=True, text=True)

    def stop(self) -> None:
        for process in (self.slirp, self.holder):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        self.slirp = self.holder = None
