"""Two "hosts" on one machine for the fleet tests: each a network namespace the test creates (`ip netns add`), joined
to a bridge in the root namespace by a veth pair, on a private test subnet that exists only on those links (traffic
never leaves the machine). PostgreSQL and Redis listen on 127.0.0.1 in the root namespace only, so the hosts reach
them through a forwarder (forwarder.py) bound to the bridge's address. Where namespaces cannot be made (no root, no
`ip`), the hosts fall back to two loopback addresses, 127.0.0.2 and 127.0.0.3, and services stay on 127.0.0.1.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from dataclasses import dataclass, field


@dataclass
class Host:
    name: str  # its NODE_NAME
    address: str  # its NODE_ADDRESS: where its gateway and replicas listen
    netns: str = ""  # "" in the loopback fallback

    def argv(self, cmd: list[str]) -> list[str]:
        """`cmd` as run on this host (inside its namespace, if it has one)."""
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else list(cmd)


@dataclass
class Network:
    mode: str  # "netns" or "loopback"
    hosts: list[Host]
    services_address: str  # where the hosts reach PostgreSQL and Redis (the forwarder, or 127.0.0.1)
    bridge: str = ""
    note: str = ""  # why the fallback was taken
    created: list[str] = field(default_factory=list)  # namespaces made, for teardown

    def teardown(self) -> None:
        """Kill whatever still runs in the namespaces made here (only processes this test started run there),
        then remove the namespaces and the bridge (deleting a namespace deletes its end of each veth pair)."""
        for ns in self.created:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.created.clear()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def make_network(names: list[str]) -> Network:
    """Namespaces when allowed, else loopback addresses (Network.note says why). APPLIANCE_FLEET_LOOPBACK=1 asks for
    the loopback fallback outright (to check it on a machine that allows namespaces)."""
    if os.environ.get("APPLIANCE_FLEET_LOOPBACK") == "1":
        return _loopback(names, "APPLIANCE_FLEET_LOOPBACK=1")
    if shutil.which("ip") is None:
        return _loopback(names, "no `ip` command")
    tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
    net = Network("netns", [], f"{subnet}.1", bridge=f"flbr{tag}")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for i, name in enumerate(names):
            ns, outer, inner = f"fleet{tag}-{i}", f"flh{tag}{i}", f"fln{tag}{i}"
            _ip("netns", "add", ns)
            net.created.append(ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "master", net.bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", inner, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{subnet}.{i + 2}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            net.hosts.append(Host(name, f"{subnet}.{i + 2}", ns))
    except OSError as exc:
        net.teardown()
        return _loopback(names, str(exc))
    return net


def _loopback(names: list[str], why: str) -> Network:
    hosts = [Host(name, f"127.0.0.{i + 2}") for i, name in enumerate(names)]
    return Network("loopback", hosts, "127.0.0.1", note=f"network namespaces unavailable ({why}): "
                   "the two hosts are loopback addresses 127.0.0.2 and 127.0.0.3")
