"""Gateway overhead benchmark: the same engine replica, driven directly and through the gateway, in one run.

    python -m appliance.gateway.bench [--model DIR] [--backend sqlite|postgres] [--concurrency 16]

Starts one engine replica (``appliance.runtime.server``) and the gateway under uvicorn (a real process, with
SQLite and the in-process quota backend by default, or ``--backend postgres`` for PostgreSQL + Redis), then runs
the same streaming workload (N concurrent streams) in turn against the engine's /generate (one stream per request,
the replica's own API), over one /session straight to the engine (the channel the gateway uses, without the
gateway), and through the gateway's /v1/completions. It reports, against each baseline, the median TTFT the gateway
adds (target <= 5 ms) and the gateway's token throughput as a share of the baseline's (target >= 95%); the verdict
is against the first (--baselines). ``--gateways gateway,gateway-streams`` adds a second gateway process that opens
one /generate stream per request (GATEWAY_ENGINE_SESSIONS=0), so a run compares the two in the same rounds.
Writes a JSON report.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import httpx

from appliance.gateway.bench_report import BASELINES, Phase, compare, cpu_us_per_token, median_ms, path_stats, render
from appliance.gateway.engine_http import Pool
from appliance.gateway.engine_session import Session
from appliance.runtime.replica_auth import SECRET_ENV, bearer, new_secret

ROOT = Path(__file__).resolve().parents[2]
# The replica's credential: the started engine gets it in its environment; --engine-url takes $APPLIANCE_REPLICA_SECRET.
ENGINE_SECRET = os.environ.get(SECRET_ENV) or new_secret()
GATEWAYS = {  # path -> GATEWAY_ENGINE_SESSIONS of its gateway process
    "gateway": "1",  # the gateway as shipped: one session per replica
    "gateway-streams": "0",  # a gateway with one /generate stream per request (the one before sessions)
}
PROMPT = "The quick brown fox jumps over the lazy dog while the appliance streams tokens to its clients. " * 2
_serial = iter(range(10**9))


def prompt() -> str:
    """A prompt no earlier request shares a prefix with, so neither path gets prefix-cache hits the other lacks
    (the gateway salts the cache per tenant; direct requests are unsalted)."""
    return f"{next(_serial):07d} {PROMPT}"


async def _stream(pool: Pool, path: str, body: dict, headers: dict[str, str], phase: Phase,
                  on_line: Callable[[bytes, bool], tuple[bool, int]]) -> None:
    """POST one streaming request and time its first token. `on_line(line, first_seen)` says whether the line
    carries tokens and how many completion tokens the stream reports in total (0 if this line does not say); once
    the first token is seen it only needs to look at the lines that end or break the stream."""
    start = time.perf_counter()
    first = None
    response = await pool.request("POST", path, json.dumps(body).encode(), 10.0, 600.0, headers)
    try:
        if response.status != 200:
            phase.errors += 1
            await response.read()
            return
        async for lines in response.batches():
            for line in lines:
                try:
                    token_line, total = on_line(line, first is not None)
                except (ValueError, KeyError):
                    phase.errors += 1
                    continue
                if token_line and first is None:
                    first = time.perf_counter() - start
                phase.tokens += total
    finally:
        response.close()
    phase.requests += 1
    phase.ttft_s.append(first if first is not None else float("nan"))


def engine_line(line: bytes, first_seen: bool) -> tuple[bool, int]:
    if first_seen and b'"type":"done"' not in line and b'"type":"error"' not in line:
        return True, 0
    event = json.loads(line)
    kind = event["type"]
    if kind == "error":
        raise ValueError(event)
    return kind == "delta" and bool(event["token_ids"]), event["completion_tokens"] if kind == "done" else 0


def gateway_line(line: bytes, first_seen: bool) -> tuple[bool, int]:
    if not line.startswith(b"data: ") or line == b"data: [DONE]":
        return False, 0
    if first_seen and b'"usage":{' not in line and b'"error":' not in line:
        return True, 0
    chunk = json.loads(line[6:])
    if "error" in chunk:
        raise ValueError(chunk)
    usage = chunk.get("usage")
    return bool(chunk.get("choices")), usage["completion_tokens"] if usage else 0


def generate_body(max_tokens: int) -> dict:
    """A GenerateRequest for the direct paths (the gateway sends the same sampling for its requests)."""
    return {"request_id": uuid.uuid4().hex, "prompt": prompt(),
            "sampling": {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}}


async def session_request(session: Session, max_tokens: int, phase: Phase) -> None:
    """One request over a /session shared by all of the phase's workers (what the gateway does, without it)."""
    start = time.perf_counter()
    first = None
    stream = await session.open(generate_body(max_tokens), 600.0)
    try:
        if stream.started.result() is not None:
            phase.errors += 1
            return
        async for events in stream.events():
            for event in events:
                kind = event["type"]
                if kind == "delta" and first is None and event["token_ids"]:
                    first = time.perf_counter() - start
                elif kind == "done":
                    phase.tokens += event["completion_tokens"]
                elif kind == "error":
                    phase.errors += 1
    finally:
        stream.close()
    phase.requests += 1
    phase.ttft_s.append(first if first is not None else float("nan"))


async def engine_request(pool: Pool, max_tokens: int, phase: Phase) -> None:
    await _stream(pool, "/generate", generate_body(max_tokens), {}, phase, engine_line)


async def gateway_request(pool: Pool, key: str, model: str, max_tokens: int, phase: Phase) -> None:
    body = {"model": model, "prompt": prompt(), "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    await _stream(pool, "/v1/completions", body, {"Authorization": f"Bearer {key}"}, phase, gateway_line)


def cpu_seconds(procs: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in {**procs, "client": os.getpid()}.items():
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)] if name != "client" else [proc]  # uvicorn's workers
        out[name] = sum(t.user + t.system for t in (p.cpu_times() for p in family))
    return out


def engine_ttft_totals(engine_url: str | None) -> tuple[float, float]:
    """(sum, count) of the engine's own TTFT histogram (arrival at the engine to its first token)."""
    if engine_url is None:
        return 0.0, 0.0
    text = httpx.get(f"{engine_url}/metrics", headers=bearer(ENGINE_SECRET), timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for kind in totals:
            if line.startswith(f"appliance_engine_request_ttft_seconds_{kind}{{"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


async def run_phase(path: str, url: str, concurrency: int, requests: int, one,
                    watch: dict[str, int] | None = None, engine_url: str | None = None) -> Phase:
    """`requests` requests through `concurrency` workers, each with its own keep-alive connection to `url` (on
    the session path, all sharing one session). The client is the gateway's own lean HTTP/1.1 client on every
    path, so the load generator's CPU stays small and alike (a general-purpose client cost as much CPU per token
    as the engine here)."""
    phase = Phase(path)
    before = cpu_seconds(watch or {})
    ttft_before = engine_ttft_totals(engine_url)
    remaining = [requests]
    host, port = url.removeprefix("http://").rsplit(":", 1)
    secret = ENGINE_SECRET if path in ("engine", "session") else ""  # the replica's paths; not to a gateway
    shared = await Session.connect(Pool(host, int(port), secret=secret), 10.0, 10.0) if path == "session" else None

    async def worker() -> None:
        pool = Pool(host, int(port), secret=secret)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                await one(shared or pool, phase, requests - remaining[0] - 1)
        finally:
            for conn in pool.idle:
                conn.close()

    start = time.perf_counter()
    try:
        await asyncio.gather(*[worker() for _ in range(concurrency)])
    finally:
        if shared is not None:
            shared.close()
    phase.wall_s = time.perf_counter() - start
    after = cpu_seconds(watch or {})
    phase.cpu_s = {name: after[name] - before[name] for name in after}
    ttft_after = engine_ttft_totals(engine_url)
    if ttft_after[1] > ttft_before[1]:
        phase.engine_ttft_s = (ttft_after[0] - ttft_before[0]) / (ttft_after[1] - ttft_before[1])
    return phase


def start_process(argv: list[str], env: dict, log: Path, ready_line: bytes | None = None,
                  timeout_s: float = 300) -> tuple[subprocess.Popen, str | None]:
    out = open(log, "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE if ready_line else out, stderr=out)
    if ready_line is None:
        return proc, None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(ready_line):
            return proc, line.split()[1].decode()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"{argv[2]} did not start; see {log}")


def start_gateway(name: str, env: dict, work: Path, workers: int, key: str) -> tuple[subprocess.Popen, str]:
    """A gateway process (uvicorn) for `name` in GATEWAYS, answering on its URL."""
    port = free_port()
    proc, _ = start_process([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log", "--log-level", "warning", "--workers",
                             str(workers)], {**env, "GATEWAY_ENGINE_SESSIONS": GATEWAYS[name]}, work / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    return proc, url


def setup_database(env: dict, engine_url: str, model_dir: Path) -> str:
    """Migrate and create a tenant, key, model and READY replica row for the engine; returns the key."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica
    from appliance.tenancy.services import create_api_key, create_tenant

    name = f"bench-{uuid.uuid4().hex[:6]}"
    model = Model.objects.create(name=name)
    version = ModelVersion.objects.create(model=model, version=1, source_uri=str(model_dir))
    dep = Deployment.objects.create(name=name, model_version=version, status=Deployment.Status.RUNNING)
    node, _ = Node.objects.get_or_create(name="bench-node")
    port = int(engine_url.rsplit(":", 1)[1])
    Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1", port=port,
                           secret=ENGINE_SECRET)
    # Limits far above what the run uses, so every request takes the whole admission path (rate windows,
    # concurrency, monthly budget) without being refused.
    limits = {"rpm": 1_000_000, "tpm": 2_000_000_000, "max_concurrency": 10_000, "monthly_tokens": 10**12}
    tenant = create_tenant(name, models=[name], **limits)
    return create_api_key(tenant, **limits)[1], name


def ensure_postgres_db(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.gateway.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bench",
                   help="checkpoint directory, or 'bench' (the engine benchmark's ~55M Llama, random weights) or "
                        "'tiny' (a ~0.1M Llama: the engine is nearly free, so this stresses the gateway)")
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--postgres-db", default="appliance_gw_bench")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=64, help="requests per phase")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--length-spread", type=float, default=0.5,
                   help="output lengths are drawn uniformly from max_tokens * (1 +- spread); 0: all the same")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warm-wave", action=argparse.BooleanOptionalAction, default=True,
                   help="before each measured phase, run one unmeasured wave on the same path, so each phase "
                        "measures steady state rather than the first requests after the other path's phase (the "
                        "gateway's caches and early-dispatch room lapse while the engine is driven directly)")
    p.add_argument("--rounds", type=int, default=6,
                   help="rounds; each runs every path once, back to back, in an order that rotates")
    p.add_argument("--engine-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="the engine's torch threads (default: all cores but one, which the HTTP tier and the load "
                        "generator need; with every core, torch's spinning threads lose whole steps to preemption)")
    p.add_argument("--gateway-workers", type=int, default=1,
                   help="uvicorn worker processes for the gateway (the AMI runs 2)")
    p.add_argument("--engine-arg", action="append", default=[], help="extra engine server flag, e.g. --max-num-seqs=32")
    p.add_argument("--engine-url", default=None, help="use this running replica instead of starting one")
    p.add_argument("--baselines", default="engine,session",
                   help="comma-separated paths the gateway is compared with, the verdict against the first: " +
                        "; ".join(f"{k}: {v}" for k, v in BASELINES.items()))
    p.add_argument("--gateways", default="gateway",
                   help="comma-separated gateways to run, each its own process, the verdict for the first: gateway "
                        "(one session per replica, as shipped), gateway-streams (one /generate stream per request)")
    p.add_argument("--out", default=str(ROOT / "var" / "bench" / "gateway-bench.json"))
    args = p.parse_args(argv)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    if not baselines or any(b not in BASELINES for b in baselines):
        p.error(f"--baselines: choose from {', '.join(BASELINES)}")
    gateways = [g.strip() for g in args.gateways.split(",") if g.strip()]
    if not gateways or any(g not in GATEWAYS for g in gateways):
        p.error(f"--gateways: choose from {', '.join(GATEWAYS)}")

    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    model_dir = Path(args.model)
    if args.model in ("bench", "tiny") and args.engine_url is None:
        from appliance.runtime.bench_workload import BENCH_MODEL, QUICK_MODEL
        from appliance.runtime.tiny_models import make_checkpoint

        model_dir = make_checkpoint(work / "model", "llama", **(BENCH_MODEL if args.model == "bench" else QUICK_MODEL))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "appliance.settings", "APPLIANCE_HOME": str(work / "home"),
           "LOG_LEVEL": "WARNING"}
    if args.backend == "postgres":
        ensure_postgres_db(args.postgres_db)
        env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.postgres_db}", REDIS_URL=args.redis_url)
    else:
        env.pop("DATABASE_URL", None)
        os.environ.pop("DATABASE_URL", None)  # this process migrates and creates the rows, with the same settings
        env["REDIS_URL"] = ""
    (work / "home").mkdir(parents=True, exist_ok=True)

    procs: list[subprocess.Popen] = []
    try:
        engine_url = args.engine_url
        watch: dict[str, int] = {}
        if engine_url is None:
            engine, engine_url = start_process(
                [sys.executable, "-m", "appliance.runtime.server", "--model", str(model_dir), "--device", "cpu",
                 "--port", "0", "--num-threads", str(args.engine_threads), *args.engine_arg],
                {**env, SECRET_ENV: ENGINE_SECRET},
                work / "engine.log", ready_line=b"READY")
            procs.append(engine)
            watch["engine"] = engine.pid
        key, model = setup_database(env, engine_url, model_dir)
        gateway_urls = {}
        for name in gateways:
            gateway, gateway_urls[name] = start_gateway(name, env, work, args.gateway_workers, key)
            procs.append(gateway)
            watch[name] = gateway.pid

        # Output lengths vary around --max-tokens (the same sequence on both paths), so streams end at different
        # times and arrivals spread out as they would with real clients, instead of all 16 finishing in the same
        # engine step and arriving again together (--length-spread 0 gives that lock-step workload).
        rng = random.Random(args.seed)
        lengths = [max(1, round(args.max_tokens * (1 + args.length_spread * (2 * rng.random() - 1))))
                   for _ in range(max(args.requests, args.concurrency))]

        async def on_engine(pool, phase, i):
            await engine_request(pool, lengths[i], phase)

        async def on_session(session, phase, i):
            await session_request(session, lengths[i], phase)

        async def on_gateway(pool, phase, i):
            await gateway_request(pool, key, model, lengths[i], phase)

        handlers = {"engine": (engine_url, on_engine), "session": (engine_url, on_session),
                    **{name: (url, on_gateway) for name, url in gateway_urls.items()}}
        paths = [*baselines, *gateways]
        print(f"warming up ({args.backend}) ...", flush=True)
        for path in paths:
            url, fn = handlers[path]
            asyncio.run(run_phase(path, url, args.concurrency, args.concurrency, fn))
        phases: list[Phase] = []
        for r in range(args.rounds):
            for path in paths[r % len(paths):] + paths[:r % len(paths)]:  # each path takes each place in turn
                url, fn = handlers[path]
                if args.warm_wave:  # one unmeasured wave first: the other paths' phases left this one idle
                    asyncio.run(run_phase(path, url, args.concurrency, args.concurrency, fn))
                phase = asyncio.run(run_phase(path, url, args.concurrency, args.requests, fn, watch, engine_url))
                phase.round = r
                inside = ("" if phase.engine_ttft_s is None
                          else f" (mean {phase.engine_ttft_s * 1000:.2f} ms inside the engine)")
                print(f"  round {r + 1} {path:8s}: {phase.throughput:8.1f} tok/s, median TTFT "
                      f"{median_ms(phase.ttft_s):7.2f} ms{inside}, {phase.errors} errors", flush=True)
                phases.append(phase)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    stats = {path: path_stats(phases, path) for path in paths}
    by_gateway = {gateway: {baseline: compare(phases, stats, gateway, baseline) for baseline in baselines}
                  for gateway in gateways}
    comparisons = by_gateway[gateways[0]]
    cpu_per_token_us = {path: cpu_us_per_token(phases, path) for path in paths}
    report = {
        "benchmark": "gateway overhead", "backend": args.backend,
        "database": "PostgreSQL + Redis" if args.backend == "postgres" else "SQLite, in-process quotas (no Redis)",
        "model_dir": str(model_dir), "engine_url": args.engine_url, "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "max_tokens": args.max_tokens, "length_spread": args.length_spread, "seed": args.seed,
        "gateway_workers": args.gateway_workers, "gateways": gateways, "warm_wave": args.warm_wave,
        "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "engine_threads": args.engine_threads, "load_average_at_end": os.getloadavg(),
        "baselines": {b: BASELINES[b] for b in baselines},
        **stats,
        # The verdict is against the first baseline (by default the replica's own per-request API: what a client
        # without the gateway would use); the others are reported beside it.
        "verdict_baseline": baselines[0],
        "added_median_ttft_ms": comparisons[baselines[0]]["added_median_ttft_ms"],
        "throughput_share_pct": comparisons[baselines[0]]["throughput_share_pct"],
        "comparisons": comparisons,  # of the first gateway; every gateway's in comparisons_by_gateway
        "comparisons_by_gateway": by_gateway,
        "cpu_us_per_token": cpu_per_token_us,
        "targets": {"added_median_ttft_ms_max": 5.0, "throughput_share_pct_min": 95.0},
        "passed": comparisons[baselines[0]]["passed"],
        "phases": [asdict(ph) | {"throughput_tok_s": ph.throughput} for ph in phases],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print("\n" + render(report, args.model, paths, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
