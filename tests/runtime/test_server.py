"""The replica's internal server, started as a real process: NDJSON streaming, errors, abort, metrics, sockets."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from appliance.runtime.protocol import decode_event

from . import replica_server
from .replica_server import AUTH, SECRET, stop_server

SERVER_ARGS = ["--max-num-seqs", "8", "--num-kv-blocks", "64", "--served-model-name", "tiny"]


def start_server(model: Path, *extra: str, secret: str | None = SECRET) -> tuple[subprocess.Popen, str]:
    return replica_server.start_server(model, *SERVER_ARGS, *extra, secret=secret)


@pytest.fixture(scope="module")
def server(tiny_llama):
    proc, url = start_server(tiny_llama, "--port", "0")
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=url, timeout=60, headers=AUTH) as client:
        yield client
    stop_server(proc)


def stream_events(client: httpx.Client, body: dict) -> list:
    with client.stream("POST", "/generate", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/x-ndjson"
        return [decode_event(line) for line in r.iter_lines() if line]


def counter(client: httpx.Client, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def wait_idle(client: httpx.Client, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = client.get("/health").json()
        if health["in_flight"] == 0 and health["kv_blocks_used"] == 0 and health["num_running"] == 0:
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy: {health}")
        time.sleep(0.02)


def test_health_reports_model_and_context_length(server):
    body = server.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "tiny"
    assert body["max_model_len"] == 512
    assert body["kv_blocks_total"] == 64
    assert set(body["load_phases"]) == {"import_runtime", "weight_load"}  # the agent records them as cold start
    assert all(seconds >= 0 for seconds in body["load_phases"].values()) and body["load_phases"]["weight_load"] > 0


def test_generate_streams_start_deltas_done_matching_llm(server, tiny_llama):
    from appliance.runtime.llm import LLM
    from appliance.runtime.sampling_params import SamplingParams

    events = stream_events(server, {"request_id": "g1", "prompt": "The quick brown fox",
                                    "sampling": {"max_tokens": 10, "temperature": 0, "ignore_eos": True}})
    start, deltas, done = events[0], events[1:-1], events[-1]
    assert start.type == "start" and start.request_id == "g1"
    assert done.type == "done"
    assert all(e.type == "delta" and e.index == 0 for e in deltas)
    tokens = [t for e in deltas for t in e.token_ids]
    assert deltas[-1].finish_reason == "length"
    assert done.completion_tokens == len(tokens) == 10
    want = LLM(str(tiny_llama), num_kv_blocks=64).generate(["The quick brown fox"],
                                                           SamplingParams(max_tokens=10, temperature=0,
                                                                          ignore_eos=True))[0]
    assert start.prompt_tokens == done.prompt_tokens == len(want.prompt_token_ids)
    assert tokens == want.token_ids
    assert "".join(e.text for e in deltas) == want.text
    assert done.metrics["ttft_s"] > 0 and done.metrics["e2e_s"] >= done.metrics["ttft_s"]


def test_session_serves_a_list_of_commands_tagged_per_request(server):
    """POST /session with a fixed body: every generate is served as its own /generate would be, tagged with its
    request id; refusals answer in the OpenAI error shape; the response ends when the last request has."""
    prompts = {f"s{i}": f"session prompt {i}" for i in range(3)}
    commands = [{"op": "generate", "request_id": rid, "prompt": p,
                 "sampling": {"max_tokens": 6 + i, "temperature": 0, "ignore_eos": True}}
                for i, (rid, p) in enumerate(prompts.items())]
    commands += [{"op": "generate", "request_id": "bad", "prompt": "x", "sampling": {"top_p": 7}},
                 {"op": "generate", "request_id": "s0", "prompt": "again"},  # its id is in use
                 {"op": "rewind", "request_id": "odd"}]
    body = b"".join(json.dumps(c).encode() + b"\n" for c in commands) + b"not json\n"
    with server.stream("POST", "/session", content=body) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        by_id.setdefault(line.pop("id"), []).append(line)
    rejected = {rid: events for rid, events in by_id.items() if events[0]["type"] == "rejected"}
    assert rejected["bad"][0]["status"] == 400 and rejected["bad"][0]["error"]["param"] == "top_p"
    assert rejected["odd"][0]["error"]["param"] == "op"
    assert rejected[""][0]["error"]["message"].startswith("a session command must be a JSON object")
    for i, (rid, prompt) in enumerate(prompts.items()):
        events = [decode_event(json.dumps(e)) for e in by_id[rid] if e["type"] != "rejected"]
        assert events[0].type == "start" and events[-1].type == "done"
        tokens = [t for e in events if e.type == "delta" for t in e.token_ids]
        assert len(tokens) == events[-1].completion_tokens == 6 + i
        alone = stream_events(server, {"request_id": f"alone-{rid}", "prompt": prompt,
                                       "sampling": {"max_tokens": 6 + i, "temperature": 0, "ignore_eos": True}})
        assert tokens == [t for e in alone if e.type == "delta" for t in e.token_ids]
    assert [e["type"] for e in by_id["s0"]].count("rejected") == 1  # the duplicate id, refused
    wait_idle(server)


def test_closing_a_session_aborts_its_requests(server):
    import socket

    aborted = counter(server, "appliance_engine_requests_finished_total", finish_reason="abort")
    host, port = str(server.base_url).removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /session HTTP/1.1\r\nHost: engine\r\nTransfer-Encoding: chunked\r\n"
                     + f"Authorization: Bearer {SECRET}\r\n\r\n".encode())
        for rid in ("k1", "k2"):
            command = json.dumps({"op": "generate", "request_id": rid, "prompt": "keep going",
                                  "sampling": {"max_tokens": 480, "ignore_eos": True}}).encode() + b"\n"
            sock.sendall(b"%x\r\n%b\r\n" % (len(command), command))
        seen = b""
        while seen.count(b'"type":"delta"') < 2:  # the request body stays open: both are running
            seen += sock.recv(65536)
        assert server.get("/health").json()["in_flight"] == 2
    wait_idle(server)
    assert counter(server, "appliance_engine_requests_finished_total", finish_reason="abort") == aborted + 2


def test_a_replica_shutting_down_drains_its_sessions(tiny_llama):
    """SIGTERM: a session finishes the requests it has, refuses new ones with 503 (the gateway retries those
    elsewhere) and ends its response, rather than holding the shutdown open until uvicorn's timeout cuts it."""
    import signal
    import socket

    proc, url = start_server(tiny_llama, "--port", "0")
    try:
        port = int(url.rsplit(":", 1)[1])

        def command(rid: str) -> bytes:
            data = json.dumps({"op": "generate", "request_id": rid, "prompt": "keep going",
                               "sampling": {"max_tokens": 480, "ignore_eos": True}}).encode() + b"\n"
            return b"%x\r\n%b\r\n" % (len(data), data)

        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"POST /session HTTP/1.1\r\nHost: engine\r\nTransfer-Encoding: chunked\r\n"
                         + f"Authorization: Bearer {SECRET}\r\n\r\n".encode()
                         + b"".join(command(f"d{i}") for i in range(8)))
            seen = b""
            while seen.count(b'"type":"delta"') < 8:
                seen += sock.recv(65536)
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # the listener closes once the shutdown (and the drain before it) has begun
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.01)
            sock.sendall(command("late"))
            while not seen.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's proper end
                data = sock.recv(65536)
                assert data, "the replica closed the session without ending it"
                seen += data
        assert proc.wait(15) == 0
    finally:
        stop_server(proc)
    events = [json.loads(line) for chunk in seen.split(b"\r\n") for line in chunk.split(b"\n")
              if line.startswith(b"{")]
    done = {e["id"]: e for e in events if e["type"] == "done"}
    assert sorted(done) == [f"d{i}" for i in range(8)] and all(e["completion_tokens"] == 480 for e in done.values())
    late = [e for e in events if e["id"] == "late"]
    assert late == [{"id": "late", "type": "rejected", "status": 503, "error": {
        "message": "the replica is shutting down", "type": "service_unavailable", "param": None, "code": None}}]


def test_chat_messages_are_rendered_with_the_chat_template(server, tiny_llama):
    from transformers import AutoTokenizer

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    events = stream_events(server, {"request_id": "c1", "messages": messages, "sampling": {"max_tokens": 3}})
    assert events[0].prompt_tokens == len(tok(text, add_special_tokens=False).input_ids)
    assert events[-1].completion_tokens >= 1


def test_n_completions_and_logprobs_stream_per_index(server):
    events = stream_events(server, {"request_id": "n2", "prompt": "Once upon a time",
                                    "sampling": {"max_tokens": 5, "n": 2, "temperature": 0.9, "seed": 7,
                                                 "ignore_eos": True, "logprobs": 2}})
    deltas = [e for e in events if e.type == "delta"]
    for index in (0, 1):
        mine = [e for e in deltas if e.index == index]
        tokens = [t for e in mine for t in e.token_ids]
        assert len(tokens) == 5 and mine[-1].finish_reason == "length"
        logprobs = [lp for e in mine for lp in e.logprobs]
        assert [lp["token_id"] for lp in logprobs] == tokens
        assert all(lp["logprob"] <= 0 and len(lp["top"]) == 2 for lp in logprobs)
    assert events[-1].completion_tokens == 10


def test_stop_token_ids_finish_with_stop(server):
    greedy = {"max_tokens": 8, "temperature": 0, "ignore_eos": True}
    first = stream_events(server, {"request_id": "s1", "prompt": "It was the best", "sampling": greedy})
    tokens = [t for e in first if e.type == "delta" for t in e.token_ids]
    stop_at = tokens[2]
    events = stream_events(server, {"request_id": "s2", "prompt": "It was the best",
                                    "sampling": {**greedy, "stop_token_ids": [stop_at]}})
    deltas = [e for e in events if e.type == "delta"]
    assert deltas[-1].finish_reason == "stop"
    assert events[-1].completion_tokens == tokens.index(stop_at) + 1


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "hi", "sampling": {"top_p": 2}}, "top_p"),
        ({"prompt": "hi", "sampling": {"max_tokens": -1}}, "max_tokens"),
        ({"prompt": "hi", "sampling": {"temperature": -1}}, "temperature"),
        ({"prompt": "hi", "sampling": {"bogus": 1}}, "bogus"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "word " * 600}, "prompt"),
        ({"prompt_token_ids": [1, 10**6]}, "prompt_token_ids"),
        ({"prompt_token_ids": "nope"}, "prompt_token_ids"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, "prompt"),
        ({"messages": [{"content": "no role"}]}, "messages"),
        ({"request_id": "", "prompt": "hi"}, "request_id"),
    ],
)
def test_bad_requests_answer_400_with_openai_error_naming_the_param(server, body, param):
    r = server.post("/generate", json={"request_id": "bad", **body})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


ROUTES = [("GET", "/health"), ("GET", "/metrics"), ("GET", "/tokenizer_info"), ("POST", "/generate"),
          ("POST", "/session"), ("POST", "/abort"), ("POST", "/tokenize"), ("POST", "/detokenize"),
          ("POST", "/profile"), ("GET", "/no-such-route")]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-credential", f"Basic {SECRET}", f"Bearer {SECRET}x",
                                           f"Bearer {SECRET[:-1]}"])
def test_a_caller_without_the_replica_credential_gets_401_on_every_route(server, authorization):
    generated = counter(server, "appliance_engine_generation_tokens_total")
    headers = {"Authorization": authorization} if authorization else {}
    body = {"request_id": "intruder", "prompt": "let me in", "cache_salt": "tenant-a", "sampling": {"max_tokens": 4}}
    with httpx.Client(base_url=server.base_url, timeout=30, headers=headers) as intruder:
        for method, path in ROUTES:
            r = intruder.request(method, path, json=body if method == "POST" else None)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["error"]["code"] == "invalid_replica_credential"
            assert "tiny" not in r.text  # nothing about the model, not even its name
    assert counter(server, "appliance_engine_generation_tokens_total") == generated


def test_a_replica_without_a_credential_in_its_environment_refuses_to_start(tiny_llama):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "APPLIANCE_REPLICA_SECRET"}
    done = subprocess.run([sys.executable, "-m", "appliance.runtime.server", "--model", str(tiny_llama)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout.startswith("FAILED no replica credential: set APPLIANCE_REPLICA_SECRET")


def _malformed_generate_bodies():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
    fields = ["request_id", "prompt", "prompt_token_ids", "messages", "tools", "sampling", "cache_salt", "priority",
              "echo_prompt"]
    sampling = st.dictionaries(st.sampled_from(["max_tokens", "temperature", "top_p", "n", "stop", "logprobs",
                                                "seed", "guided", "prompt_logprobs", "bogus"]), values, max_size=3)
    body = st.fixed_dictionaries({}, optional={f: (sampling if f == "sampling" else values) for f in fields})
    return body | values | st.binary(max_size=30)


def test_malformed_bodies_get_a_4xx_json_error_never_a_500(server):
    """Property: whatever JSON (or not JSON) is posted to the replica's routes, the answer is a 200 or a 4xx with
    an OpenAI-shaped error; never a 500, never a traceback. Bounded and derandomized for CI."""
    from hypothesis import HealthCheck, given, settings

    seen: dict[int, int] = {}

    @settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=_malformed_generate_bodies())
    def check(body):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        for path in ("/generate", "/abort", "/tokenize", "/detokenize", "/profile"):
            if path == "/profile" and isinstance(body, dict) and "seconds" in body:
                continue
            with server.stream("POST", path, content=content) as r:  # a 200 stream is closed at once (aborted)
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    continue
                r.read()
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:300])
            error = r.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"], (path, body, error)
            assert "Traceback" not in r.text

    check()
    assert seen.get(400, 0) > 100  # the generator did produce bad input
    wait_idle(server)  # and nothing it sent is left running or holding KV blocks


@pytest.mark.parametrize("body, param", [
    ({"prompt": "hi"}, "request_id"),  # missing: was a plain-text 500 before
    ({"request_id": 7, "prompt": "hi"}, "request_id"),
    ({"request_id": "t", "prompt": "hi", "cache_salt": 5}, "cache_salt"),
    ({"request_id": "t", "prompt": "hi", "priority": "high"}, "priority"),
    ({"request_id": "t", "prompt": "hi", "priority": True}, "priority"),
    ({"request_id": "t", "prompt": "hi", "echo_prompt": "yes"}, "echo_prompt"),
    ({"request_id": "t", "prompt": "hi", "tools": {"a": 1}}, "tools"),
    ({"request_id": "t", "prompt": ["hi"]}, "prompt"),
    ({"request_id": "t", "prompt": "hi", "sampling": []}, "sampling"),
])
def test_wrong_types_name_the_field_in_a_400(server, body, param):
    r = server.post("/generate", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_malformed_session_commands_are_rejected_with_a_4xx_each(server):
    commands = [b"[1, 2]", b"\xff\xfe", b'{"op": "generate"}', b'{"op": "generate", "request_id": 3}',
                b'{"op": "generate", "request_id": "w1", "prompt": "hi", "priority": "high"}',
                b'{"op": "generate", "request_id": "w2", "prompt": "hi", "cache_salt": []}',
                b'{"op": "generate", "request_id": "w3", "prompt": "hi", "sampling": "greedy"}',
                b'{"op": "launch", "request_id": "w4"}', b'{"op": "abort"}']
    with server.stream("POST", "/session", content=b"\n".join(commands) + b"\n") as r:
        assert r.status_code == 200
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert len(events) == len(commands)
    assert all(e["type"] == "rejected" and 400 <= e["status"] < 500 for e in events), events
    assert all(e["error"]["type"] == "invalid_request_error" for e in events)


def test_malformed_json_and_unknown_routes(server):
    r = server.post("/generate", content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    assert server.get("/nope").status_code == 404
    assert server.get("/generate").status_code == 405


def test_client_disconnect_aborts_and_frees_blocks(server):
    aborted = counter(server, "appliance_engine_requests_finished_total", finish_reason="abort")
    body = {"request_id": "d1", "prompt": "go on and on", "sampling": {"max_tokens": 480, "ignore_eos": True}}
    with httpx.Client(base_url=str(server.base_url), timeout=60, headers=AUTH) as other:
        with other.stream("POST", "/generate", json=body) as r:
            lines = r.iter_lines()
            assert json.loads(next(lines))["type"] == "start"
            assert json.loads(next(lines))["type"] == "delta"
            assert server.get("/health").json()["in_flight"] == 1
    wait_idle(server)
    assert counter(server, "appliance_engine_requests_finished_total", finish_reason="abort") == aborted + 1


def test_abort_endpoint_ends_the_stream(server):
    body = {"request_id": "a1", "prompt": "abort me", "sampling": {"max_tokens": 480, "ignore_eos": True}}
    events: list = []
    started = threading.Event()

    def consume():
        with httpx.Client(base_url=str(server.base_url), timeout=60, headers=AUTH) as c, c.stream("POST", "/generate",
                                                                                   json=body) as r:
            for line in r.iter_lines():
                events.append(decode_event(line))
                started.set()

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(30)
    r = server.post("/abort", json={"request_id": "a1"})
    assert r.status_code == 200
    assert r.json() == {"request_id": "a1", "aborted": True}
    t.join(30)
    deltas = [e for e in events if e.type == "delta"]
    assert deltas[-1].finish_reason == "abort"
    assert events[-1].type == "done" and events[-1].completion_tokens < 480
    wait_idle(server)
    assert server.post("/abort", json={"request_id": "a1"}).json()["aborted"] is False
    assert server.post("/abort", json={}).status_code == 400


def test_metrics_exposes_engine_metric_names(server):
    stream_events(server, {"request_id": "m1", "prompt": "metrics", "sampling": {"max_tokens": 3}})
    text = server.get("/metrics").text
    for name in ["appliance_engine_request_ttft_seconds_bucket", "appliance_engine_request_inter_token_seconds_count",
                 "appliance_engine_request_e2e_seconds_sum", "appliance_engine_request_queue_seconds_count",
                 "appliance_engine_num_requests_running", "appliance_engine_num_requests_waiting",
                 "appliance_engine_kv_blocks_used", "appliance_engine_kv_blocks_total",
                 "appliance_engine_prefix_cache_hit_tokens_total", "appliance_engine_preemptions_total",
                 "appliance_engine_step_batched_tokens_bucket", "appliance_engine_step_forward_seconds_sum",
                 "appliance_engine_step_overhead_seconds_total", 'model="tiny"']:
        assert name in text
    assert counter(server, "appliance_engine_generation_tokens_total") >= 3


def test_unix_socket_mode(tiny_llama, tmp_path):
    sock = tmp_path / "replica.sock"
    proc, url = start_server(tiny_llama, "--uds", str(sock))
    try:
        assert url == f"unix:{sock}"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://replica", timeout=60,
                          headers=AUTH) as c:
            assert c.get("/health").json()["status"] == "ok"
            events = stream_events(c, {"request_id": "u1", "prompt": "over a socket",
                                       "sampling": {"max_tokens": 4, "ignore_eos": True}})
            assert events[-1].completion_tokens == 4
            assert "appliance_engine_kv_blocks_used" in c.get("/metrics").text
    finally:
        stop_server(proc)
    assert not sock.exists()


async def test_health_is_503_while_loading():
    from appliance.runtime.server_app import ReplicaApp

    app = ReplicaApp("loading-model")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica") as c:
        r = await c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = await c.post("/generate", json={"request_id": "x", "prompt": "hi"})
        assert r.status_code == 503


def test_tcp_listener_disables_nagle_on_accepted_connections():
    import socket

    from appliance.runtime.server import bind

    sock, url = bind("127.0.0.1", 0, None)
    try:
        assert url == f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY per connection only for TCP-proto sockets
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_profile_writes_a_trace_and_an_operator_summary(server, tmp_path):
    def generate():
        stream_events(server, {"request_id": "p1", "prompt": "profile me",
                               "sampling": {"max_tokens": 40, "ignore_eos": True}})

    t = threading.Thread(target=generate)
    t.start()
    r = server.post("/profile", json={"seconds": 0.5, "output_dir": str(tmp_path / "prof")})
    t.join(60)
    assert r.status_code == 200
    summary = r.json()
    assert (tmp_path / "prof" / "trace.json").stat().st_size > 0
    assert json.loads((tmp_path / "prof" / "summary.json").read_text())["top_ops"] == summary["top_ops"]
    assert summary["top_ops"] and all(op["count"] >= 1 for op in summary["top_ops"])
    assert server.post("/profile", json={"seconds": -1, "output_dir": "x"}).json()["error"]["param"] == "seconds"
