"""Compile entry point for the neuron target, called by the lifecycle's CompileJob (Celery).

    compile_artifact(model_dir, options, out_dir, progress_cb=None, *, instance=None, cache_url=None,
                     model_checksum=None) -> manifest dict

* `model_dir`: a Hugging Face checkpoint directory (config.json, safetensors, tokenizer files).
* `options`: NeuronCompileOptions, its dict form, or a CompileJob's options() dict: `target` (must be "neuron"),
  `batch_buckets` (= batch_sizes), `seq_len_buckets` (= token_buckets and context_buckets; the largest is
  max_model_len), `tp_degree`, `dtype`, `quantization` ("none" | "int8"), `kernels`. Unknown keys are an error, and
  errors name the key the caller used. Without a length, max_model_len is min(2048, max_position_embeddings).
* `out_dir`: where the artifact goes. The compile runs in a sibling staging directory and is renamed into place
  only when complete, so a failed or interrupted compile never leaves a half-written artifact. If `out_dir` already
  holds an artifact with the same key, it is reused (no compile) and the manifest says `"reused": true`.
* `progress_cb(stage, percent, message)`: stages validate (5), sdk (10), compile (15 -> 90), finalize (95), done (100).
* `instance`: an instance type name (e.g. "inf2.xlarge") to validate tp_degree and memory against.
* `cache_url`: sets NEURON_COMPILE_CACHE_URL (the Neuron persistent cache, local path or s3://) for the compile.
* `model_checksum`: the ModelVersion's sha256 over its weights; computed from the safetensors files when absent.

Errors: NeuronOptionsError (ValueError with `.field`) for bad options, NeuronSDKUnavailable when the SDK is not
installed, anything the SDK raises while compiling. The manifest (also written to <out_dir>/artifact.json) holds:
format, key, target, backend, family, architecture, vocab_size, options, buckets, sdk versions, model_dir,
model_checksum, memory_estimate, files (relative path -> bytes), size_bytes, compile_seconds, created_at, reused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.runtime.neuron import sdk
from appliance.runtime.neuron.model_shape import ModelShape
from appliance.runtime.neuron.options import NeuronCompileOptions, NeuronOptionsError

MANIFEST = "artifact.json"
JOB_ALIASES = {"batch_buckets": "batch_sizes", "seq_len_buckets": "token_buckets"}
FORMAT = "appliance-neuron-artifact/1"
ProgressCallback = Callable[[str, int, str], None]


def weights_checksum(model_dir: str | Path) -> str:
    """sha256 over the checkpoint's weight files (names and bytes, in name order)."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(model_dir).iterdir() if p.suffix in (".safetensors", ".bin"))
    for path in files:
        h.update(path.name.encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def artifact_key(model_checksum: str, options: NeuronCompileOptions, sdk_versions: Mapping[str, str]) -> str:
    """Content address of an artifact: weights + compile options + SDK versions."""
    payload = json.dumps({"weights": model_checksum, "options": options.to_dict(), "sdk": dict(sdk_versions)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    path = Path(artifact_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{artifact_dir} is not a neuron artifact (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown artifact format {manifest.get('format')!r}")
    return manifest


def coerce_options(
    data: Mapping[str, Any], model_config: Mapping[str, Any]
) -> tuple[NeuronCompileOptions, dict[str, str]]:
    """Options from a dict (compile options or a CompileJob's options()); returns them and {option: key used}."""
    data = dict(data)
    target = data.pop("target", "neuron")
    if target != "neuron":
        raise NeuronOptionsError("target", f"this compiler builds target 'neuron', got {target!r}")
    used: dict[str, str] = {}
    for alias, name in JOB_ALIASES.items():
        value = data.pop(alias, None)
        if not value:
            continue
        if name in data:
            raise NeuronOptionsError(alias, f"give either {alias} or {name}, not both")
        data[name] = value
        used[name] = alias
    lengths = data.get("token_buckets")
    if "token_buckets" in used and isinstance(lengths, (list, tuple)) and all(isinstance(v, int) for v in lengths):
        if "max_model_len" not in data:
            data["max_model_len"] = max(lengths)
            used["max_model_len"] = used["token_buckets"]
        if "context_buckets" not in data:
            data["context_buckets"] = list(lengths)
            used["context_buckets"] = used["token_buckets"]
    data.setdefault("max_model_len", min(2048, int(model_config.get("max_position_embeddings") or 2048)))
    try:
        return NeuronCompileOptions.from_dict(data), used
    except NeuronOptionsError as exc:
        raise _renamed(exc, used) from None


def _renamed(exc: NeuronOptionsError, used: dict[str, str]) -> NeuronOptionsError:
    if exc.field not in used:
        return exc
    return NeuronOptionsError(used[exc.field], str(exc).split(": ", 1)[1])


def make_backend(options: NeuronCompileOptions, family: str, api: Any = None) -> Any:
    from appliance.runtime.neuron.nxdi_backend import NxdiBackend

    return NxdiBackend(options, family, api)


@contextmanager
def _env(name: str, value: str | None):
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def compile_artifact(
    model_dir: str | Path,
    options: NeuronCompileOptions | Mapping[str, Any],
    out_dir: str | Path,
    progress_cb: ProgressCallback | None = None,
    *,
    instance: str | None = None,
    cache_url: str | None = None,
    model_checksum: str | None = None,
) -> dict[str, Any]:
    """Validate, compile for Neuron and write the artifact with its manifest; see the module docstring."""
    report = progress_cb or (lambda stage, percent, message: None)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    report("validate", 5, f"validating options for {model_dir.name}")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face checkpoint (no config.json)")
    config = json.loads(config_path.read_text())
    used: dict[str, str] = {}
    if not isinstance(options, NeuronCompileOptions):
        options, used = coerce_options(options, config)
    try:
        memory = options.validate(config, instance)
    except NeuronOptionsError as exc:
        raise _renamed(exc, used) from None
    shape = ModelShape.from_config(config)
    family = shape.family(options.backend)

    report("sdk", 10, f"loading the Neuron SDK for backend {options.backend}")
    sdk.require(options.backend)
    versions = sdk.versions(options.backend)
    checksum = model_checksum or weights_checksum(model_dir)
    key = artifact_key(checksum, options, versions)

    if (out_dir / MANIFEST).is_file():
        existing = load_manifest(out_dir)
        if existing.get("key") == key:
            report("done", 100, "reused the existing artifact")
            return {**existing, "reused": True}
        raise FileExistsError(f"{out_dir} holds a different artifact (key {existing.get('key', '?')[:12]})")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and is not a neuron artifact")

    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        report("compile", 15, f"compiling {shape.architecture} with {options.backend} (tp_degree={options.tp_degree})")
        started = time.monotonic()
        with _env("NEURON_COMPILE_CACHE_URL", cache_url):
            make_backend(options, family).compile(model_dir, staging)
        seconds = time.monotonic() - started
        report("finalize", 95, "writing the manifest")
        buckets = options.buckets
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "key": key,
            "target": "neuron",
            "backend": options.backend,
            "family": family,
            "architecture": shape.architecture,
            "vocab_size": shape.vocab_size,
            "options": options.to_dict(),
            "buckets": {"batch_sizes": list(buckets.batch_sizes), "context_lengths": list(buckets.context_lengths),
                        "token_lengths": list(buckets.token_lengths)},
            "sdk": versions,
            "model_dir": str(model_dir.resolve()),
            "model_checksum": checksum,
            "memory_estimate": {"weight_bytes_per_core": memory.weight_bytes_per_core,
                                "kv_bytes_per_core": memory.kv_bytes_per_core},
            "files": _files(staging),
            "compile_seconds": round(seconds, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest["size_bytes"] = sum(manifest["files"].values())
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report("done", 100, f"artifact {key[:12]} written to {out_dir}")
    return {**manifest, "reused": False}


def main(argv: list[str] | None = None) -> int:
    """python -m appliance.runtime.neuron.compile MODEL_DIR OUT_DIR [--options JSON] [--instance TYPE]"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m appliance.runtime.neuron.compile", description=main.__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--options", default="{}", help="compile options as JSON, e.g. '{\"tp_degree\": 2}'")
    parser.add_argument("--instance", default=None, help="instance type to validate against, e.g. inf2.xlarge")
    parser.add_argument("--cache-url", default=None, help="NEURON_COMPILE_CACHE_URL for this compile")
    args = parser.parse_args(argv)
    try:
        manifest = compile_artifact(
            args.model_dir, json.loads(args.options), args.out_dir,
            lambda stage, percent, message: print(f"[{percent:3d}%] {stage}: {message}", file=sys.stderr),
            instance=args.instance, cache_url=args.cache_url,
        )
    except (ValueError, FileNotFoundError, FileExistsError, sdk.NeuronSDKUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("key", "backend", "size_bytes", "reused")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
