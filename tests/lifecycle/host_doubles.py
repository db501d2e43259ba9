"""TEST DOUBLES for first boot's probes, labelled as such: this machine is not an EC2 instance and has no Neuron
driver, so the tests stand in for what those would answer. They prove the appliance's parsing, its IMDSv2 call
sequence and what it records; they do not prove what real IMDS, neuron-ls or modinfo print on an inf2 instance.

- FakeIMDS: a local HTTP server on 127.0.0.1 answering IMDSv2's two calls (PUT /latest/api/token, then GET
  /latest/meta-data/instance-type with the token), as the EC2 user guide documents them.
- fake_tool: an executable script on PATH (a fake `neuron-ls` or `modinfo`) printing recorded output.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "test-double-token"


class FakeIMDS:
    """TEST DOUBLE for the EC2 instance metadata service (IMDSv2 only: a GET without the token gets 401)."""

    def __init__(self, instance_type: str = "inf2.24xlarge") -> None:
        self.instance_type = instance_type
        self.calls: list[tuple[str, str]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                double.calls.append(("PUT", self.path))
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._answer(200, TOKEN)
                else:
                    self._answer(400, "missing X-aws-ec2-metadata-token-ttl-seconds")

            def do_GET(self) -> None:  # noqa: N802
                double.calls.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._answer(401, "")
                elif self.path == "/latest/meta-data/instance-type":
                    self._answer(200, double.instance_type)
                else:
                    self._answer(404, "")

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeIMDS":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_tool(bin_dir: Path, name: str, stdout: str = "", stderr: str = "", exit_status: int = 0) -> Path:
    """TEST DOUBLE: write an executable `name` into bin_dir that prints the given output and exits."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\n# TEST DOUBLE written by tests/lifecycle/host_doubles.py, not the real tool\n"
        f"cat <<'EOF'\n{stdout}\nEOF\n" + (f"cat >&2 <<'EOF'\n{stderr}\nEOF\n" if stderr else "")
        + f"exit {exit_status}\n"
    )
    script.chmod(0o755)
    return script


def fake_neuron_ls(bin_dir: Path, devices: list[dict[str, Any]]) -> Path:
    """TEST DOUBLE `neuron-ls` printing `devices` as `neuron-ls --json-output` does."""
    return fake_tool(bin_dir, "neuron-ls", json.dumps(devices))
