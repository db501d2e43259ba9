"""The AMI's files checked by their own tools: `packer validate` of the template (Debian's packer, on the host),
`systemd-analyze verify` of every appliance unit and `nginx -t` of the site (both inside the provisioned root, where
the units' ExecStart binaries and Debian's nginx exist)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from container import Container

# Debian 12's packer is 1.6.6; `packer { required_plugins { ... } }` came in 1.7 (the amazon builder is built into
# 1.6.6). The copy validated here has that one block removed and is otherwise the template as it is.
REQUIRED_PLUGINS = re.compile(r"^packer \{\n\s*required_plugins \{.*?\n\s*\}\n\}\n", re.S | re.M)


def packer_scripts(template: Path) -> list[str]:
    """The provisioning scripts the template's shell provisioner runs, in its order."""
    text = template.read_text()
    block = re.search(r'provisioner "shell" \{.*?scripts\s*=\s*\[(.*?)\]', text, re.S)
    if block is None:
        raise ValueError(f"{template}: no shell provisioner with a scripts list")
    return re.findall(r'"([^"]+)"', block.group(1))


def packer_validate(ami: Path, workdir: Path, bundle: Path) -> tuple[bool, str]:
    copy = workdir / "packer"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(ami, copy, ignore=shutil.ignore_patterns("build", "test"))
    template = copy / "appliance.pkr.hcl"
    text, removed = REQUIRED_PLUGINS.subn("", template.read_text(), count=1)
    template.write_text(text)
    (copy / "build").mkdir()
    shutil.copy(bundle, copy / "build" / "appliance.tar.gz")
    version = subprocess.run(["packer", "version"], capture_output=True, text=True).stdout.strip()
    result = subprocess.run(["packer", "validate", "."], cwd=copy, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "CHECKPOINT_DISABLE": "1"})
    note = f"{version}; required_plugins block {'removed' if removed else 'absent'} for it"
    return result.returncode == 0, f"{note}; {(result.stdout + result.stderr).strip() or 'valid'}"


def systemd_verify(machine: Container, units: list[str]) -> tuple[bool, str]:
    paths = [f"/etc/systemd/system/{u}" for u in units]
    result = machine.run("systemd-analyze", "verify", *paths, check=False)
    output = (result.stdout + result.stderr).strip()
    return result.returncode == 0 and not output, output or f"{len(units)} units verified"


def systemd_verify_control(machine: Container) -> tuple[bool, str]:
    """The same verify of appliance-web.service with its ExecStart binary renamed must fail, or the check proves
    nothing."""
    unit = machine.run("cat", "/etc/systemd/system/appliance-web.service").stdout
    broken = unit.replace("/opt/appliance/.venv/bin/uvicorn", "/opt/appliance/.venv/bin/uvicorn-missing")
    machine.run("mkdir", "-p", "/tmp/ami-verify")
    machine.run("sh", "-c", f"cat > /tmp/ami-verify/appliance-web.service <<'EOF'\n{broken}EOF")
    result = machine.run("systemd-analyze", "verify", "/tmp/ami-verify/appliance-web.service", check=False)
    output = (result.stdout + result.stderr).strip()
    return result.returncode != 0 and "uvicorn-missing" in output, output


NGINX_WRAPPER = """pid /tmp/ami-nginx-t/nginx.pid;
error_log stderr;
events {}
http {
    include /etc/nginx/mime.types;
    access_log off;
    include /tmp/ami/nginx/appliance.conf;
}
"""


def nginx_test(machine: Container) -> tuple[bool, str]:
    """nginx -t of the repository's site file alone, in a temporary prefix with a minimal nginx.conf around it."""
    machine.run("mkdir", "-p", "/tmp/ami-nginx-t")
    machine.run("sh", "-c", f"cat > /tmp/ami-nginx-t/nginx.conf <<'EOF'\n{NGINX_WRAPPER}EOF")
    result = machine.run("nginx", "-t", "-p", "/tmp/ami-nginx-t", "-c", "/tmp/ami-nginx-t/nginx.conf", check=False)
    return result.returncode == 0, (result.stdout + result.stderr).strip()
