"""make ami-test: the AMI, proven to install (as far as a machine without AWS and Neuron can prove it).

  python3 ami/test/run.py [--keep] [--reuse]

1. `packer validate` of ami/appliance.pkr.hcl (Debian's packer).
2. A fresh Debian 12 root from mmdebstrap (cached under ~/.cache/appliance-ami-test by its package list); the
   template's provisioning scripts run in it for real (chroot, in a network namespace whose only way out is
   slirp4netns, so the host's own services stay unseen), except the two that need the Neuron package
   repositories, which ami/test/standins/ replaces by labelled stand-ins that check the pins and install no Neuron
   package; 40-services.sh runs inside the root booted with systemd-nspawn (it needs PostgreSQL running).
3. `systemd-analyze verify` of every appliance unit and `nginx -t` of the site, inside the provisioned root.
4. The root booted as the AMI's first boot (systemd in systemd-nspawn, its own network namespace): first boot and
   appliance.target start from the units; /v1/models answers through nginx with a tenant's key, the console's login
   page loads, the first-boot admin logs in; then the services restart and a second boot, and the data is still there.

Needs root, mmdebstrap, packer, systemd-container, slirp4netns (make ami-test installs them).
The last line is "N passed, N failed".
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import appliance_checks as app
import static_checks
from container import Container
from outbound_netns import OutboundNetns
from root import Root, base_tarball

REPO = Path(__file__).resolve().parents[2]
AMI = REPO / "ami"
STANDINS = AMI / "test" / "standins"
CACHE = Path(os.environ.get("AMI_TEST_CACHE", Path.home() / ".cache" / "appliance-ami-test"))
WORK = Path(os.environ.get("AMI_TEST_WORKDIR", "/var/tmp/appliance-ami-test"))
UNITS = sorted(p.name for p in (AMI / "systemd").iterdir())


class Results:
    def __init__(self) -> None:
        self.passed = self.failed = 0
        self.started = time.monotonic()

    def record(self, name: str, ok: bool, detail: str = "") -> bool:
        self.passed += ok
        self.failed += not ok
        print(f"[{time.monotonic() - self.started:6.0f}s] {'PASS' if ok else 'FAIL'} {name}"
              + (f": {detail}" if detail else ""), flush=True)
        return ok

    def check(self, name: str, step) -> bool:
        try:
            ok, detail = step()
        except Exception as exc:  # a failing step is a failed check with its reason, and the run goes on
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return self.record(name, ok, detail)


def log(message: str) -> None:
    print(f"  {message}", flush=True)


def bundle(path: Path) -> Path:
    """The appliance's tracked files as the working tree has them (like make ami-bundle, uncommitted edits too)."""
    stash = subprocess.run(["git", "stash", "create"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "archive", "--format=tar.gz", "-o", str(path), stash or "HEAD"], cwd=REPO, check=True)
    return path


def torch_wheel(folder: Path) -> Path:
    """The torch wheel the development set pins (constraints-dev.txt), as pip finds it for this machine: here a CPU
    wheel on local disk; it goes into the root for the Neuron Python stand-in."""
    pin = next(line for line in (REPO / "constraints-dev.txt").read_text().splitlines() if line.startswith("torch=="))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("torch-*.whl"):
        if not old.name.startswith(f"torch-{pin.split('==')[1]}"):
            old.unlink()
    if not list(folder.glob("torch-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "-d", str(folder), pin], check=True)
    wheel = next(folder.glob("torch-*.whl"))
    log(f"torch for the stand-in: {wheel.name}")
    return wheel


def provision(root: Root, results: Results, scripts: list[str], logs: Path) -> bool:
    """Every script but 40-services.sh, in the template's order, in a chroot in a network namespace of its own with
    outbound access only (the host's 127.0.0.1 services unseen)."""
    network = OutboundNetns()
    network.start()
    try:
        return provision_in(root, results, scripts, logs, network.prefix())
    finally:
        network.stop()


def provision_in(root: Root, results: Results, scripts: list[str], logs: Path, netns: list[str]) -> bool:
    for script in scripts:
        name = Path(script).name
        if name == "40-services.sh":
            continue
        standin = STANDINS / name
        path = f"/tmp/ami-test-standins/{name}" if standin.is_file() else f"/tmp/ami/{script}"
        started = time.monotonic()
        result = root.chroot("bash", path, netns=netns, log_file=logs / f"{name}.log", timeout=1200)
        label = f"provision {name}" + (" (STAND-IN: ami/test/standins/" + name + ")" if standin.is_file() else "")
        detail = f"{time.monotonic() - started:.0f}s, exit {result.returncode}, log {logs / (name + '.log')}"
        if not results.record(label, result.returncode == 0, detail):
            return False
    return True


def serving_checks(machine: Container, results: Results, seed: app.Seed, when: str) -> None:
    states = app.wait_active(machine)
    results.record(f"{when}: every service active", all(v == "active" for v in states.values()),
                   ", ".join(f"{k}={v}" for k, v in states.items()))
    app.wait_http(machine, "/login/")
    results.check(f"{when}: /v1/models lists the model with the tenant's key", lambda: app.models_listed(machine, seed))
    results.check(f"{when}: a wrong key gets an OpenAI 401", lambda: app.bad_key_refused(machine))
    results.check(f"{when}: console login page via nginx", lambda: app.login_page(machine))
    results.check(f"{when}: the first-boot admin logs in", lambda: app.admin_logs_in(machine, seed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the provisioned root under AMI_TEST_WORKDIR")
    parser.add_argument("--reuse", action="store_true",
                        help="skip provisioning and boot the root a --keep run left (to debug the boot checks)")
    args = parser.parse_args()
    results = Results()
    if os.geteuid() != 0:
        results.record("make ami-test needs root (mmdebstrap, chroot, systemd-nspawn)", False)
    else:
        run(results, keep=args.keep, reuse=args.reuse)
    print(f"total {time.monotonic() - results.started:.0f}s")
    print(f"{results.passed} passed, {results.failed} failed")
    return 0 if results.failed == 0 and results.passed else 1


def run(results: Results, keep: bool, reuse: bool) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    tarball_path = bundle(WORK / "appliance.tar.gz")
    results.check("packer validate ami/appliance.pkr.hcl",
                  lambda: static_checks.packer_validate(AMI, WORK, tarball_path))
    root = Root(WORK / "root", CACHE)
    machine = Container(root.path, logs / "console.log")
    try:
        boot_and_check(root, machine, results, logs, tarball_path, reuse)
    except Exception as exc:
        results.record("the run", False, f"{type(exc).__name__}: {exc}")
    finally:
        machine.poweroff()
        if root.path.exists():
            root.build_mode(False)
        root.unmount()
        if not keep:
            root.remove()
        log(f"logs: {logs}")


def boot_and_check(root: Root, machine: Container, results: Results, logs: Path, tarball_path: Path,
                   reuse: bool) -> None:
    if not (reuse and (root.path / "opt/appliance/.venv/bin/python").exists()):
        if not provision_fresh_root(root, results, logs, tarball_path):
            return
    after_provisioning(root, machine, results, logs)


def provision_fresh_root(root: Root, results: Results, logs: Path, tarball_path: Path) -> bool:
    """The base root unpacked afresh, and every script but 40-services.sh run in it."""
    started = time.monotonic()
    base = base_tarball(CACHE, log)
    root.unpack(base)
    results.record("fresh Debian 12 root (mmdebstrap)", True, f"{time.monotonic() - started:.0f}s from {base.name}")
    shutil.copytree(AMI, root.path / "tmp/ami", ignore=shutil.ignore_patterns("build", "test"))
    shutil.copytree(STANDINS, root.path / "tmp/ami-test-standins")
    shutil.copy(tarball_path, root.path / "tmp/appliance.tar.gz")
    wheels = CACHE / "wheels"
    torch_wheel(wheels)
    root.mount(wheels)
    root.build_mode(True)
    provisioned = provision(root, results, static_checks.packer_scripts(AMI / "appliance.pkr.hcl"), logs)
    root.build_mode(False)
    root.unmount()
    return provisioned


def after_provisioning(root: Root, machine: Container, results: Results, logs: Path) -> None:
    """40-services.sh on the booted build instance, the unit and site checks, then the AMI's boots."""
    log(f"boot 1 (the build instance): {machine.boot()}")
    # Booting emptied /tmp (tmpfiles.d's "D /tmp"): put the files back where Packer's file provisioner uploads them.
    shutil.copytree(AMI, root.path / "tmp/ami", ignore=shutil.ignore_patterns("build", "test"), dirs_exist_ok=True)
    started = time.monotonic()
    services = machine.run("bash", "/tmp/ami/scripts/40-services.sh", check=False, timeout=300)
    (logs / "40-services.sh.log").write_text(services.stdout + services.stderr)
    if not results.record("provision 40-services.sh (inside the booted root)", services.returncode == 0,
                          f"{time.monotonic() - started:.0f}s, exit {services.returncode}"):
        return
    results.check(f"systemd-analyze verify ({', '.join(UNITS)})", lambda: static_checks.systemd_verify(machine, UNITS))
    results.check("systemd-analyze verify fails on a unit whose ExecStart is missing (control)",
                  lambda: static_checks.systemd_verify_control(machine))
    results.check("nginx -t of ami/nginx/appliance.conf (Debian's nginx, temporary prefix)",
                  lambda: static_checks.nginx_test(machine))
    machine.poweroff()
    started = time.monotonic()
    log(f"boot 2 (the AMI's first boot): {machine.boot()}")
    states = app.wait_active(machine)
    results.record("first boot: firstboot and appliance.target started from the units",
                   all(v == "active" for v in states.values()),
                   f"{time.monotonic() - started:.0f}s; " + ", ".join(f"{k}={v}" for k, v in states.items()))
    results.check("first boot: register_node recorded the node and what it lacks here",
                  lambda: app.node_recorded(machine))
    seed = app.seed(machine)
    serving_checks(machine, results, seed, "first boot")
    started = time.monotonic()
    before = app.main_pids(machine)
    machine.run("systemctl", "restart", "postgresql", "redis-server", "nginx", "appliance.target", timeout=300)
    after = app.main_pids(machine)
    results.record("systemctl restart restarted every service (new main PIDs)",
                   len(before) == 7 and all(before[u] != after.get(u) and after.get(u) != "0" for u in before),
                   f"{time.monotonic() - started:.0f}s; "
                   + ", ".join(f"{u} {before[u]}->{after.get(u)}" for u in before))
    serving_checks(machine, results, seed, "after systemctl restart")
    machine.poweroff()
    log(f"boot 3 (a reboot; first boot runs again): {machine.boot()}")
    serving_checks(machine, results, seed, "after a reboot")


if __name__ == "__main__":
    sys.exit(main())
