"""Registering model versions from Hugging Face-format checkpoint directories.

A checkpoint directory holds config.json, weights (*.safetensors, or pytorch_model*.bin) and tokenizer files.
Registration reads the config (architecture, family from ``model_type``, context length from
``max_position_embeddings``, dtype), computes a sha256 over the weight files, and creates the Model (if new) and
its next ModelVersion. The command, the admin API and the console all call :func:`register_model_version`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import Max

from appliance.tenancy.audit import record_audit, snapshot

from .models import Model, ModelVersion

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
CHUNK = 1 << 20


class CheckpointError(ValueError):
    """The directory is not a usable Hugging Face checkpoint; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What registration reads from a checkpoint directory."""

    path: Path
    architecture: str
    family: str
    context_length: int
    dtype: str
    config: dict[str, Any]
    weight_files: tuple[Path, ...]
    has_tokenizer: bool


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a checkpoint directory's config and list its weight files; CheckpointError if it is not one."""
    if str(path).startswith("s3://"):
        raise CheckpointError(f"{path}: only local directories can be registered (copy the checkpoint first)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory")
    root = root.resolve()
    config_path = root / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{root}: no config.json, not a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: unreadable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    architectures = config.get("architectures") or []
    family = config.get("model_type") or ""
    if not architectures and not family:
        raise CheckpointError(f"{config_path}: neither 'architectures' nor 'model_type' is set")
    weights = sorted({p for pattern in WEIGHT_PATTERNS for p in root.glob(pattern) if p.is_file()})
    if not weights:
        raise CheckpointError(f"{root}: no weight files (*.safetensors or pytorch_model*.bin)")
    context = next((config[k] for k in CONTEXT_KEYS if isinstance(config.get(k), int) and config[k] > 0), None)
    if context is None:
        raise CheckpointError(f"{config_path}: no context length ({' / '.join(CONTEXT_KEYS)})")
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return CheckpointInfo(
        path=root,
        architecture=str(architectures[0]) if architectures else "",
        family=str(family),
        context_length=int(context),
        dtype=dtype,
        config=config,
        weight_files=tuple(weights),
        has_tokenizer=any((root / name).is_file() for name in TOKENIZER_FILES),
    )


def validate_checkpoint(info: CheckpointInfo, tokenizer_uri: str = "") -> bool | None:
    """Refuse (CheckpointError, with the reason) weights whose shapes disagree with config.json and a tokenizer
    larger than the vocabulary; returns whether the tokenizer has a chat template (None: not checked, a tokenizer
    outside this machine)."""
    from .checkpoint_checks import CheckFailed, check_tokenizer, check_weights, safetensors_shapes, tokenizer_facts

    try:
        safetensors = [p for p in info.weight_files if p.suffix == ".safetensors"]
        if safetensors:
            check_weights(info.config, safetensors_shapes(safetensors))
        where = Path(tokenizer_uri).expanduser() if tokenizer_uri else info.path
        if not where.is_dir():
            return None
        facts = tokenizer_facts(where)
        check_tokenizer(info.config, facts)
    except CheckFailed as exc:
        raise CheckpointError(f"{info.path}: {exc}") from None
    return facts.has_chat_template


def weights_checksum(files: tuple[Path, ...]) -> str:
    """sha256 over the weight files, in name order, each preceded by its name."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def register_model_version(
    name: str,
    path: str | Path,
    *,
    tokenizer_uri: str = "",
    description: str = "",
    actor=None,
) -> tuple[ModelVersion, bool]:
    """Register the checkpoint at `path` as the next version of model `name`; returns (version, created).

    Registering the same directory with the same weights as the latest version returns that version unchanged.
    Raises CheckpointError (a ValueError) with a message naming the problem.
    """
    try:
        validate_slug(name)
    except ValidationError:
        raise CheckpointError(f"model name {name!r}: use letters, digits, '-' and '_' only") from None
    if len(name) > Model._meta.get_field("name").max_length:
        raise CheckpointError(f"model name {name!r} is too long")
    info = inspect_checkpoint(path)
    if not info.has_tokenizer and not tokenizer_uri:
        raise CheckpointError(f"{info.path}: no tokenizer files; pass a tokenizer location")
    chat_template = validate_checkpoint(info, tokenizer_uri)
    checksum = weights_checksum(info.weight_files)
    with transaction.atomic():
        model, model_created = Model.objects.select_for_update().get_or_create(
            name=name,
            defaults={"architecture": info.architecture, "family": info.family, "description": description},
        )
        if model_created:
            record_audit(actor, "create", model, snapshot(model))
        latest = model.versions.order_by("-version").first()
        if latest is not None and latest.checksum == checksum and latest.source_uri == str(info.path):
            return latest, False
        number = (model.versions.aggregate(m=Max("version"))["m"] or 0) + 1
        version = ModelVersion.objects.create(
            model=model,
            version=number,
            source_uri=str(info.path),
            checksum=checksum,
            tokenizer_uri=tokenizer_uri or str(info.path),
            context_length=info.context_length,
            dtype=info.dtype,
            config=info.config,
            has_chat_template=chat_template,
        )
        record_audit(actor, "create", version, snapshot(version))
    return version, True
