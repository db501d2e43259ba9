"""TEST DOUBLE: a stand-in Kubernetes API server on 127.0.0.1 — not Kubernetes.

It implements only what the replica controller calls: list/create/delete pods and create/delete secrets in a
namespace (the core/v1 REST paths and JSON shapes the official `kubernetes` client speaks), and validates every pod
and secret it is given against the Kubernetes schema (kubernetes-validate) and its name as an RFC 1123 subdomain, as a
real API server refuses a bad one (422). No kubelet runs anything: a test plays the kubelet with mark_ready(),
crash(), evict() and unschedulable().
"""
from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes_validate

KUBERNETES_VERSION = "1.31"
COLLECTION = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>pods|secrets)$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # what the API server asks of object names
ITEM = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>pods|secrets)/(?P<name>[^/]+)$")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors (k=v,k2=v2), the only kind the controller sends."""
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class KubernetesApiDouble:
    """TEST DOUBLE of the Kubernetes API server's pod and secret endpoints (see the module docstring)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict]] = {"pods": {}, "secrets": {}}
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                double.calls.append((method, url.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                code, answer = double.handle(method, url.path, parse_qs(url.query), body)
                self._send(code, answer)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="k8s-api-double")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> KubernetesApiDouble:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- the REST endpoints ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        with self.lock:
            if (m := COLLECTION.match(path)) and method == "GET":
                kind, ns = m["kind"], m["ns"]
                selector = (query.get("labelSelector") or [""])[0]
                items = [o for (n, _), o in sorted(self.objects[kind].items()) if n == ns
                         and matches(o["metadata"].get("labels") or {}, selector)]
                return 200, {"kind": "PodList" if kind == "pods" else "SecretList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": "1"}, "items": items}
            if (m := COLLECTION.match(path)) and method == "POST":
                return self._create(m["kind"], m["ns"], body)
            if (m := ITEM.match(path)) and method == "DELETE":
                obj = self.objects[m["kind"]].pop((m["ns"], m["name"]), None)
                if obj is None:
                    return 404, status(404, "NotFound", f'{m["kind"]} "{m["name"]}" not found')
                return 200, obj if m["kind"] == "pods" else {"kind": "Status", "apiVersion": "v1",
                                                             "status": "Success"}
            return 404, status(404, "NotFound", f"the stand-in API server does not serve {method} {path}")

    def _create(self, kind: str, ns: str, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return 400, status(400, "BadRequest", "the body is not a JSON object")
        try:
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            return 422, status(422, "Invalid", f"{kind[:-1]} is invalid: {where}: {exc.message}")
        name = body["metadata"]["name"]
        if not DNS_SUBDOMAIN.match(name):
            return 422, status(422, "Invalid", f'{kind[:-1]} "{name}" is invalid: metadata.name: Invalid value: '
                                               "a lowercase RFC 1123 subdomain must consist of lower case "
                                               "alphanumeric characters, '-' or '.'")
        if (ns, name) in self.objects[kind]:
            return 409, status(409, "AlreadyExists", f'{kind} "{name}" already exists')
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion="1")
        if kind == "secrets":
            plain = obj.pop("stringData", None) or {}
            written = {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}
            obj["data"] = {**(obj.get("data") or {}), **written}  # as the API server stores stringData
        else:
            obj["status"] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]}
        self.objects[kind][(ns, name)] = obj
        return 201, obj

    # ---- the test plays the kubelet --------------------------------------------------------------------------

    def pods(self, ns: str = "") -> list[dict]:
        with self.lock:
            return [o for (n, _), o in sorted(self.objects["pods"].items()) if not ns or n == ns]

    def secret_value(self, ns: str, name: str, key: str) -> str | None:
        with self.lock:
            obj = self.objects["secrets"].get((ns, name))
        return base64.b64decode(obj["data"][key]).decode() if obj else None

    def _pod(self, name: str) -> dict:
        return next(o for (_, n), o in self.objects["pods"].items() if n == name)

    def mark_ready(self, name: str, ip: str) -> None:
        """The kubelet started the engine and its readiness probe passed."""
        with self.lock:
            pod = self._pod(name)
            pod["status"] = {
                "phase": "Running", "podIP": ip, "startTime": now(),
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                               {"type": "Ready", "status": "True", "lastTransitionTime": now()}],
                "containerStatuses": [{"name": "engine", "ready": True, "restartCount": 0, "image": "x",
                                       "imageID": "", "state": {"running": {"startedAt": now()}}}],
            }

    def crash(self, name: str, exit_code: int, message: str, restarts: int = 1) -> None:
        """The engine exited and the kubelet is backing off before restarting it (CrashLoopBackOff)."""
        with self.lock:
            pod = self._pod(name)
            pod["status"] = {
                "phase": "Running", "podIP": pod["status"].get("podIP"),
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                               {"type": "Ready", "status": "False", "lastTransitionTime": now()}],
                "containerStatuses": [{
                    "name": "engine", "ready": False, "restartCount": restarts, "image": "x", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 10s restarting failed container=engine"}},
                    "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message,
                                                 "finishedAt": now()}},
                }],
            }

    def evict(self, name: str, message: str) -> None:
        """The kubelet evicted the pod (phase Failed): it will not run again."""
        with self.lock:
            pod = self._pod(name)
            pod["status"] = {"phase": "Failed", "reason": "Evicted", "message": message}

    def unschedulable(self, name: str, message: str) -> None:
        with self.lock:
            pod = self._pod(name)
            pod["status"] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                 "lastTransitionTime": now()}]}
