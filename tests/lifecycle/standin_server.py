"""STAND-IN engine replica for lifecycle tests — NOT the engine.

It speaks the replica contract the node agent relies on (argv of appliance.runtime.server, `READY <url>` on stdout,
GET /health, POST /generate streaming NDJSON events from appliance.runtime.protocol) but generates fake tokens
("tok0 tok1 ...") on a timer. Used only until the real server (appliance.runtime.server) is available in this
branch; tests that use it say so in their names.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from appliance.runtime.protocol import DeltaEvent, DoneEvent, GenerateRequest, StartEvent, encode_event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--port", type=int, default=0)
    args, _ = parser.parse_known_args()
    if not (Path(args.model) / "config.json").is_file():
        print(f"no config.json in {args.model}", file=sys.stderr)
        sys.exit(2)
    time.sleep(float(os.environ.get("STANDIN_LOAD_S", "0.3")))  # stands in for loading weights
    token_interval = float(os.environ.get("STANDIN_TOKEN_INTERVAL_S", "0.01"))
    model_name = Path(args.model).name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "model": model_name, "standin": True}).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            req = GenerateRequest.from_dict(data)
            max_tokens = int(req.sampling.get("max_tokens", 16))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(encode_event(StartEvent(req.request_id, prompt_tokens=len((req.prompt or "").split()))))
            for i in range(max_tokens):
                time.sleep(token_interval)
                finish = "length" if i == max_tokens - 1 else None
                self.wfile.write(encode_event(DeltaEvent(0, f" tok{i}", [i], finish_reason=finish)))
                self.wfile.flush()
            self.wfile.write(encode_event(DoneEvent(len((req.prompt or "").split()), max_tokens)))
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"READY http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
