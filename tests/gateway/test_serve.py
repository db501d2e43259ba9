"""`manage.py serve` runs the appliance in the foreground (here on the SQLite, no-Redis defaults) and stops every
process it started on Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from .conftest import ROOT, free_port


@pytest.mark.slow
def test_serve_starts_the_web_server_and_stops_all_its_processes_on_ctrl_c(tmp_path):
    port = free_port()
    fresh = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "API_KEY_HMAC_SECRET",
             "APPLIANCE_METRICS_TOKEN", "APPLIANCE_ENV")  # a fresh installation: it makes its own secrets
    env = {k: v for k, v in os.environ.items() if k not in fresh}
    env.update(APPLIANCE_HOME=str(tmp_path), DJANGO_SETTINGS_MODULE="appliance.settings")
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port), "--no-agent"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.3)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        # /metrics wants the scrape token serve printed, which is the one stored in the installation's secrets
        line = next(line for line in iter(proc.stdout.readline, b"") if line.startswith(b"Metrics scrape token"))
        token = line.split(b": ", 1)[1].split()[0].decode()
        assert f"APPLIANCE_METRICS_TOKEN={token}\n" in (tmp_path / "secrets.env").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 401
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
        assert scraped.status_code == 200 and "appliance_" in scraped.text
        assert (tmp_path / "appliance.sqlite3").is_file()
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "uvicorn" in names and "celery" in names and "beat" in names
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        output = proc.stdout.read().decode()
        assert "all processes stopped" in output and "ERROR" not in output, output[-3000:]
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [c.cmdline() for c in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
