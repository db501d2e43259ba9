"""Convert a Hugging Face checkpoint into the engine's layout for cpu/cuda, and validate it with the engine.

The engine's layout is a Hugging Face-format directory whose safetensors hold the weights in the target dtype, plus
config.json (dtype recorded), the tokenizer files, and a manifest.json written last (files, sizes, sha256, options).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from .artifact_store import MANIFEST, sha256_file

LAYOUT_VERSION = "appliance-engine-layout/1"
DTYPES = ("float32", "bfloat16", "float16")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
ProgressFn = Callable[[str, int, str], None]  # (stage, percent, log line)


class CompileError(Exception):
    """A compile failure a user can act on; its message is recorded as the job's error."""


def toolchain_version(target: str) -> str:
    import torch
    import transformers

    return f"{LAYOUT_VERSION} torch-{torch.__version__} transformers-{transformers.__version__} target-{target}"


def source_checksum(src: Path, weights_checksum: str = "") -> str:
    """sha256 over the checkpoint's weight files (or the registered checksum) and its config/tokenizer files."""
    import hashlib

    src = Path(src)
    if not src.is_dir():
        raise CompileError(f"model directory {src} does not exist or is not a directory")
    h = hashlib.sha256()
    files = sorted(p for p in src.iterdir() if p.is_file())
    weights = [p for p in files if p.name.endswith(WEIGHT_SUFFIXES)]
    if not weights:
        raise CompileError(f"no weights in {src}: expected *.safetensors (or pytorch_model*.bin) files")
    if not (src / "config.json").is_file():
        raise CompileError(f"no config.json in {src}: not a Hugging Face-format checkpoint")
    for p in files:
        if p.name.endswith(WEIGHT_SUFFIXES) and weights_checksum:
            continue
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    h.update(weights_checksum.encode())
    return h.hexdigest()


def _load_weight_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def convert_checkpoint(src: Path, dst: Path, dtype: str, progress: ProgressFn) -> list[str]:
    """Write the weights of `src` in `dtype` as safetensors into `dst`, with config and tokenizer files."""
    import torch
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise CompileError(f"dtype {dtype!r} is not supported for cpu/cuda; choose one of {', '.join(DTYPES)}")
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    torch_dtype = getattr(torch, dtype)
    weights = sorted(p for p in src.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if any(p.suffix == ".safetensors" for p in weights):
        weights = [p for p in weights if p.suffix == ".safetensors"]
    total_bytes = 0
    written: list[str] = []
    weight_map: dict[str, str] = {}
    for i, path in enumerate(weights):
        tensors = _load_weight_file(path)
        converted = {
            name: (t.to(torch_dtype) if t.is_floating_point() else t).contiguous() for name, t in tensors.items()
        }
        out_name = path.with_suffix(".safetensors").name.replace("pytorch_model", "model")
        save_file(converted, str(dst / out_name), metadata={"format": "pt"})
        total_bytes += sum(t.numel() * t.element_size() for t in converted.values())
        weight_map.update({name: out_name for name in converted})
        written.append(out_name)
        progress("converting", 20 + int(40 * (i + 1) / len(weights)), f"converted {path.name} -> {out_name} ({dtype})")
    if len(written) > 1:
        index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
        (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and not path.name.endswith(".index.json"):
            if path.name == "config.json":
                config = json.loads(path.read_text())
                config["torch_dtype"] = dtype
                config["dtype"] = dtype
                (dst / "config.json").write_text(json.dumps(config, indent=2))
            elif path.name != MANIFEST:
                shutil.copy2(path, dst / path.name)
    return written


def validate_artifact(path: Path, device: str, progress: ProgressFn) -> dict[str, Any]:
    """Load the artifact with the engine and run a warm-up batch; raise CompileError when it does not serve."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CompileError(
                "target cuda needs a CUDA GPU on the worker that validates the artifact, and none is visible here; "
                "run the compile on a GPU node or choose target cpu"
            )
    from appliance.runtime import LLM, SamplingParams

    prompts = ["Hello", "The quick brown fox jumps over"]
    started = time.monotonic()
    try:
        llm = LLM(str(path), device=device, max_num_seqs=len(prompts), max_num_batched_tokens=256)
        outs = llm.generate(prompts, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CompileError(
            f"the engine could not load or run the converted model: {type(exc).__name__}: {exc}"
        ) from exc
    token_counts = [len(o.token_ids) for o in outs]
    if not token_counts or min(token_counts) < 1:
        raise CompileError(f"the converted model loaded but produced no tokens in the warm-up batch ({token_counts})")
    elapsed = time.monotonic() - started
    progress("validating", 90, f"engine warm-up batch of {len(prompts)} prompts: {token_counts} tokens, {elapsed:.2f}s")
    return {"loader": "appliance.runtime.LLM", "warmup_tokens": token_counts, "warmup_s": round(elapsed, 3)}


def write_manifest(path: Path, digest: str, options: dict[str, Any], toolchain: str, extra: dict[str, Any]) -> dict:
    """Write manifest.json (last, so its presence marks a complete artifact) and return it."""
    path = Path(path)
    files = {
        p.relative_to(path).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"layout": LAYOUT_VERSION, "digest": digest, "options": options, "toolchain": toolchain,
                "files": files, **extra}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
