"""The fresh Debian root the AMI's scripts provision: made by mmdebstrap from Debian's mirror, cached as a tarball
keyed by what it holds, and entered with chroot (proc, sys, dev mounted; the caches bind-mounted)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What an Ubuntu server image boots with that the scripts take for granted (systemctl); everything else the
# provisioning scripts install themselves.
VARIANT = "minbase"
INCLUDE = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
# apt, as in any chroot build, starts no daemons while the scripts install them (PostgreSQL would otherwise listen on
# the host's 127.0.0.1:5432); the test starts them from their units in the root's own network namespace.
POLICY_RC_D = "#!/bin/sh\n# make ami-test: no daemon starts during provisioning (removed afterwards)\nexit 101\n"


def base_key() -> str:
    spec = {"suite": SUITE, "mirrors": MIRRORS, "variant": VARIANT, "include": INCLUDE}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def base_tarball(cache: Path, log) -> Path:
    """The mmdebstrap tarball for this package list, made once (about 5 minutes on 2 cores) and reused."""
    tarball = cache / f"debian-{SUITE}-{base_key()}.tar"
    if tarball.is_file():
        log(f"base root: cached {tarball}")
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    cmd = ["mmdebstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE, str(partial), *MIRRORS]
    log("base root: " + " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    partial.rename(tarball)
    return tarball


@dataclass
class Root:
    """A root directory made from the base tarball, with the mounts a chroot needs."""
    path: Path
    cache: Path
    mounts: list[Path] = field(default_factory=list)

    def unpack(self, tarball: Path) -> None:
        """A fresh root from the tarball, in memory (a tmpfs of ROOT_TMPFS_SIZE): unpacking, dpkg and removing it
        are then not bound by this machine's disk (removing 3 GB of small files on disk took 2 minutes here)."""
        if self.path.exists():
            self.remove()
        self.path.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={ROOT_TMPFS_SIZE},mode=0755", "ami-test-root",
                        str(self.path)], check=True)
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(self.path)], check=True)
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf")
        # This network reaches PyPI through a TLS proxy whose CA only the host's bundle holds: pip in the root uses
        # a copy of it (PIP_CERT below). An EC2 instance reaches PyPI directly with its own CA store.
        shutil.copy(HOST_CA_BUNDLE, self.path / "tmp/ami-test-host-ca.crt")

    def mount(self, wheels: Path) -> None:
        """proc, sys, dev; apt's and pip's download caches and the torch wheel folder from the host cache."""
        self._mount(["-t", "proc", "proc"], "proc")
        self._mount(["--rbind", "/sys"], "sys")
        self._mount(["--make-rslave"], "sys", bind=False)
        self._mount(["--rbind", "/dev"], "dev")
        self._mount(["--make-rslave"], "dev", bind=False)
        for source, target in ((self.cache / "apt-archives", "var/cache/apt/archives"),
                               (self.cache / "pip", "root/.cache/pip"), (wheels, "tmp/ami-test-wheels")):
            source.mkdir(parents=True, exist_ok=True)
            self._mount(["--bind", str(source)], target)

    def _mount(self, args: list[str], target: str, bind: bool = True) -> None:
        where = self.path / target
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(where)], check=True)
        if bind:
            self.mounts.append(where)

    def unmount(self) -> None:
        for where in reversed(self.mounts):
            subprocess.run(["umount", "-R", "-l", str(where)], check=False)
        self.mounts.clear()

    def remove(self) -> None:
        self.unmount()
        if str(self.path) in _mounted():
            subprocess.run(["umount", "-l", str(self.path)], check=True)
        if any(m.startswith(f"{self.path}/") or m == str(self.path) for m in _mounted()):
            raise RuntimeError(f"{self.path} still has mounts; not removing it")
        shutil.rmtree(self.path, ignore_errors=True)

    def build_mode(self, on: bool) -> None:
        """While the scripts run in the chroot: apt starts no daemon (policy-rc.d) and dpkg skips fsync
        (force-unsafe-io, as mmdebstrap itself does); both are gone from the root before it boots."""
        policy = self.path / "usr/sbin/policy-rc.d"
        unsafe_io = self.path / "etc/dpkg/dpkg.cfg.d/ami-test-unsafe-io"
        if on:
            policy.write_text(POLICY_RC_D)
            policy.chmod(0o755)
            unsafe_io.write_text("# make ami-test: no fsync while provisioning (removed afterwards)\nforce-unsafe-io\n")
        else:
            policy.unlink(missing_ok=True)
            unsafe_io.unlink(missing_ok=True)

    def chroot(self, *argv: str, netns: list[str] | None = None, env: dict[str, str] | None = None,
               log_file: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = ["chroot", str(self.path), "/usr/bin/env", "-i", *_env_args(env or BASE_ENV), *argv]
        if netns:
            cmd = [*netns, *cmd]
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL
        try:
            return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        finally:
            if log_file:
                out.close()


ROOT_TMPFS_SIZE = os.environ.get("AMI_TEST_ROOT_TMPFS_SIZE", "8g")
HOST_CA_BUNDLE = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "PIP_CERT": "/tmp/ami-test-host-ca.crt"}


def _env_args(env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


def _mounted() -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
