"""What a user of a freshly booted AMI would try, inside the machine through nginx on port 80: the OpenAI-compatible
API with a tenant's key, the console's login page and the first-boot admin's password; and the data they created."""
from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass

from container import Container

MODEL = "ami-test-model"
TENANT = "ami-test"
SERVICES = ("postgresql", "redis-server", "nginx", "appliance-firstboot", "appliance-web", "appliance-agent",
            "appliance-worker", "appliance-beat")


@dataclass
class Seed:
    """What the test created in the appliance, to find again after a restart."""
    api_key: str
    admin_password: str


def manage(machine: Container, *args: str, timeout: float = 300) -> str:
    """python manage.py ARGS as the appliance user, with the units' environment files."""
    command = ("set -a; . /etc/appliance/appliance.env; . /etc/appliance/secrets.env; set +a; cd /opt/appliance; "
               "exec runuser -u appliance -- .venv/bin/python manage.py " + " ".join(map(shlex.quote, args)))
    return machine.run("bash", "-c", command, timeout=timeout).stdout


def http(machine: Container, path: str, *curl_args: str) -> tuple[int, str]:
    result = machine.run("curl", "-s", "-m", "30", "-w", "\n%{http_code}", *curl_args, f"http://127.0.0.1{path}",
                         check=False, timeout=60)
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def wait_active(machine: Container, timeout_s: float = 180) -> dict[str, str]:
    """Each service's ActiveState once all are active (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = dict(zip(SERVICES, machine.run("systemctl", "show", "-p", "ActiveState", "--value", *SERVICES,
                                                check=False).stdout.split()))
        if all(v == "active" for v in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def main_pids(machine: Container) -> dict[str, str]:
    """The main process of every long-running service (PostgreSQL's is its cluster unit, postgresql@VERSION-main)."""
    clusters = machine.run("systemctl", "list-units", "postgresql@*", "--plain", "--no-legend").stdout.split()[:1]
    units = [*clusters, *(s for s in SERVICES if s not in {"postgresql", "appliance-firstboot"})]
    pids = machine.run("systemctl", "show", "-p", "MainPID", "--value", *units).stdout.split()
    return dict(zip(units, pids))


def wait_http(machine: Container, path: str, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        code, _ = http(machine, path)
        if code and code != 502 or time.monotonic() > deadline:
            return code
        time.sleep(1)


def seed(machine: Container) -> Seed:
    """A tenant with an API key, a registered model (a small random-weight Llama made in the machine) and its
    deployment; the console admin's password from the file first boot wrote."""
    key = manage(machine, "create_tenant", f"{TENANT}-{int(time.time())}").strip().splitlines()[-1]
    machine.run("runuser", "-u", "appliance", "--", "/opt/appliance/.venv/bin/python", "-c",
                "import sys; sys.path.insert(0, '/opt/appliance'); from appliance.runtime.tiny_models import "
                "make_checkpoint; make_checkpoint('/var/lib/appliance/ami-test-model', 'llama')")
    manage(machine, "register_model", MODEL, "/var/lib/appliance/ami-test-model")
    manage(machine, "deploy", MODEL, "--device", "cpu", "--no-compile", "--replicas", "0", "--min-replicas", "0")
    admin = machine.run("cat", "/root/appliance-admin.txt").stdout
    password = re.search(r"password: (\S+)", admin)
    if password is None:
        raise RuntimeError(f"/root/appliance-admin.txt holds no password: {admin!r}")
    return Seed(api_key=key, admin_password=password.group(1))


def node_recorded(machine: Container) -> tuple[bool, str]:
    """First boot's register_node recorded this node as a Neuron node, and why it found no NeuronCores here."""
    out = manage(machine, "shell", "-c",
                 "import json; from appliance.catalog.models import Node; "
                 "print(json.dumps([{'name': n.name, 'device': n.device, 'cores': n.cores, "
                 "'detection': n.inventory.get('detection')} for n in Node.objects.all()]))")
    nodes = json.loads(out.strip().splitlines()[-1])
    ok = len(nodes) == 1 and nodes[0]["device"] == "neuron" and bool(nodes[0]["detection"])
    return ok, json.dumps(nodes)[:600]


def models_listed(machine: Container, seed: Seed) -> tuple[bool, str]:
    code, body = http(machine, "/v1/models", "-H", f"Authorization: Bearer {seed.api_key}")
    try:
        ids = [m["id"] for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return False, f"HTTP {code}: {body[:300]}"
    return code == 200 and MODEL in ids, f"HTTP {code}, models {ids}"


def bad_key_refused(machine: Container) -> tuple[bool, str]:
    code, body = http(machine, "/v1/models", "-H", "Authorization: Bearer sk-not-a-key")
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False, f"HTTP {code}: {body[:300]}"
    return code == 401, f"HTTP {code}, {error.get('message')}"


def login_page(machine: Container) -> tuple[bool, str]:
    code, body = http(machine, "/login/")
    css = re.search(r'href="(/static/[^"]+\.css)"', body)
    css_code = http(machine, css.group(1))[0] if css else 0
    ok = code == 200 and 'name="password"' in body and css_code == 200
    stylesheet = css.group(1) if css else "missing"
    return ok, f"/login/ HTTP {code}, stylesheet {stylesheet} HTTP {css_code} (nginx's /static/)"


def admin_logs_in(machine: Container, seed: Seed) -> tuple[bool, str]:
    jar = "/tmp/ami-test-cookies"
    machine.run("rm", "-f", jar)
    _, body = http(machine, "/login/", "-c", jar, "-b", jar)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if token is None:
        return False, "the login page has no CSRF token"
    code, _ = http(machine, "/login/", "-c", jar, "-b", jar, "-o", "/dev/null",
                   "--data-urlencode", f"csrfmiddlewaretoken={token.group(1)}", "--data-urlencode", "username=admin",
                   "--data-urlencode", f"password={seed.admin_password}")
    dashboard, page = http(machine, "/", "-b", jar)
    ok = code == 302 and dashboard == 200 and "logout" in page.lower()
    return ok, f"POST /login/ HTTP {code}, then / HTTP {dashboard}"
