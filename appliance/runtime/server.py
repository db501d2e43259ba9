"""One engine replica's internal server process.

    python -m appliance.runtime.server --model DIR --device cpu --port 0 [--host 127.0.0.1] [--uds PATH]
        [--served-model-name NAME] [--max-num-seqs N ...any EngineConfig field...]

A checkpoint whose config is a BERT-family encoder is served as an embedding model (POST /embed, encoder/).
Binds first (GET /health answers 503 while the model loads), loads the engine, then prints one line to stdout:
``READY http://HOST:PORT`` or ``READY unix:PATH``. If loading fails it prints ``FAILED <reason>`` and exits 1.

Sealed: every call must carry ``Authorization: Bearer $APPLIANCE_REPLICA_SECRET`` (the secret comes in the
environment, never the command line; replica_auth.py). Without that variable the process refuses to start unless
``--no-auth`` says it may serve anyone who can reach it (a replica run by hand on a development machine).

/health then carries ``load_phases``: seconds spent importing the engine (``import_runtime``: torch, transformers) and
loading the model (``weight_load``; on Neuron ``compile_cache_hit``), which the node agent records as part of the
replica's cold start.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import stat
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env  # noqa: E402

openmp_env.apply()  # before torch loads: passive unless APPLIANCE_OMP_WAIT=spin (the replica owns its cores)

from appliance.runtime.replica_auth import SECRET_ENV, take_secret_from_env  # noqa: E402
from appliance.runtime.server_app import ReplicaApp  # noqa: E402

log = logging.getLogger("appliance.runtime.server")

_SKIP_FIELDS = {"model", "model_dir", "device"}


def _engine_config_cls():
    from appliance.runtime.config import EngineConfig

    return EngineConfig


def _scalar_type(tp: Any) -> type | None:
    """int/float/str/bool for a field annotated with one of those (optionally `| None`); None otherwise."""
    if isinstance(tp, str):
        tp = {"int": int, "float": float, "str": str, "bool": bool}.get(tp.replace(" | None", "").strip(), None)
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (typing.Union,
                                                                                               types.UnionType) else [tp]
    return args[0] if len(args) == 1 and args[0] in (int, float, str, bool) else None


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m appliance.runtime.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face-format checkpoint directory (neuron: the artifact)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, neuron")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed in the READY line)")
    p.add_argument("--uds", default=None, help="serve on this Unix socket instead of TCP")
    p.add_argument("--served-model-name", default=None, help="name reported by /health and /metrics")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--no-auth", action="store_true",
                   help=f"serve without a credential when ${SECRET_ENV} is not set (development only)")
    engine = p.add_argument_group("engine (EngineConfig fields)")
    try:
        cls = _engine_config_cls()
    except ImportError:
        return p
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _scalar_type(hints.get(f.name, f.type))
        if f.name in _SKIP_FIELDS or tp is None:
            continue
        engine.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_parse_bool if tp is bool else tp,
                            default=argparse.SUPPRESS, help=f"default: {_default_of(f)}")
    return p


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return "computed"


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    try:
        names = {f.name for f in dataclasses.fields(_engine_config_cls())}
    except ImportError:
        return {}
    return {k: v for k, v in vars(args).items() if k in names and k not in _SKIP_FIELDS}


def build_engine(model: str, device: str, served_model_name: str, **kwargs: Any):
    """Load the model and start the engine's stepping thread; returns (AsyncEngine, facts for /health)."""
    from appliance.runtime.async_engine import AsyncEngine
    from appliance.runtime.engine import EngineCore
    from appliance.runtime.metrics import EngineMetrics

    if device == "neuron":  # `model` is a compiled Neuron artifact; cores come from NEURON_RT_VISIBLE_CORES
        from appliance.runtime.neuron.executor import neuron_engine

        core = neuron_engine(model, **kwargs)
    else:
        core = EngineCore(_engine_config_cls()(model=model, device=device, **kwargs))
    facts = {**engine_facts(core), "device": device}
    metrics = EngineMetrics(served_model_name, info={"device": device, "max_model_len": facts["max_model_len"]})
    return AsyncEngine(core, metrics), facts


def import_runtime(encoder: bool) -> None:
    """Import the engine (torch, transformers) before loading, so the load phases time the two apart."""
    if encoder:
        import appliance.runtime.encoder.model  # noqa: F401
    else:
        import appliance.runtime.engine  # noqa: F401


def load_phase(device: str) -> str:
    """The name of the model-load phase in /health's `load_phases`: on Neuron, loading the artifact compiled ahead
    of time (a compile-cache hit: a replica never compiles at start), elsewhere reading the weights."""
    return "compile_cache_hit" if device == "neuron" else "weight_load"


def engine_facts(core: Any) -> dict[str, Any]:
    cfg = core.config
    return {
        "max_model_len": int(getattr(cfg, "max_model_len", 0) or 0),
        "max_num_seqs": getattr(cfg, "max_num_seqs", None),
        "block_size": getattr(cfg, "block_size", None),
        "device": str(getattr(cfg, "device", "")),
    }


def bind(host: str, port: int, uds: str | None) -> tuple[socket.socket, str]:
    """A listening socket and the URL to announce."""
    if uds:
        path = Path(uds)
        if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)
        url = f"unix:{path}"
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio disables Nagle on accepted connections only when the proto says TCP.
        # Without it, the start event waits for the client's delayed ACK (~40 ms added to every TTFT).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        bound = sock.getsockname()[1]
        url = f"http://[{host}]:{bound}" if family == socket.AF_INET6 else f"http://{host}:{bound}"
    sock.listen(1024)
    sock.setblocking(False)
    return sock, url


def _server(config: Any, app: ReplicaApp) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.drain()  # before uvicorn waits for open exchanges: a session (the gateway's) stays open otherwise
            await super().shutdown(sockets)

    return Server(config)


async def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appliance.runtime.encoder import is_encoder_checkpoint

    name = args.served_model_name or Path(args.model).name
    secret = take_secret_from_env()
    if secret is None and not args.no_auth:
        print(f"FAILED no replica credential: set {SECRET_ENV} in the environment (the node agent does), or pass "
              f"--no-auth to serve anyone who can reach this process", flush=True)
        return 1
    if secret is None:
        log.warning("--no-auth: this replica answers every caller who can reach it")
    encoder = is_encoder_checkpoint(args.model)  # an embedding model: the encoder replica kind (runtime/encoder/)
    if encoder:
        from appliance.runtime.encoder.server_app import EncoderApp, build_encoder

        app = EncoderApp(name, secret)
    else:
        app = ReplicaApp(name, secret)
    sock, url = bind(args.host, args.port, args.uds)
    config = uvicorn.Config(app, lifespan="off", log_level=args.log_level, access_log=False,
                            timeout_keep_alive=30, timeout_graceful_shutdown=5)
    server = _server(config, app)
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal it caught once it has stopped:
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))  # make that a no-op, so we clean up
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        build = build_encoder if encoder else build_engine
        importing = time.perf_counter()
        await asyncio.to_thread(import_runtime, encoder)
        loading = time.perf_counter()
        engine, facts = await asyncio.to_thread(build, args.model, args.device, name, **engine_kwargs(args))
        facts["load_phases"] = {"import_runtime": round(loading - importing, 3),
                                load_phase(args.device): round(time.perf_counter() - loading, 3)}
    except Exception as exc:
        log.exception("loading the model failed")
        app.load_error = f"{type(exc).__name__}: {exc}"
        print(f"FAILED {app.load_error}", flush=True)
        server.should_exit = True
        await serving
        return 1
    if serving.done():  # stopped while loading
        engine.shutdown()
        return 0
    if encoder:
        app.runner, app.info = engine, facts
    else:
        app.engine, app.max_model_len = engine, facts["max_model_len"]
        app.info = {k: v for k, v in facts.items() if k != "max_model_len"}
    print(f"READY {url}", flush=True)
    try:
        await serving
    finally:
        engine.shutdown()
        if args.uds:
            Path(args.uds).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
