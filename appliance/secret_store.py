"""The installation's own secrets: made on first start, kept in a file only the appliance's user can read, reused.

``SECRET_KEY`` (Django's signing key), ``API_KEY_HMAC_SECRET`` (API-key digests) and ``APPLIANCE_METRICS_TOKEN``
(the bearer token Prometheus sends to /metrics) are resolved by `resolve()`: an explicit, non-empty environment value
wins; otherwise the value in the secrets file (``KEY=value`` lines, the format of the AMI's
/etc/appliance/secrets.env); otherwise a new random value, appended to that file (created with mode 0600, under an
exclusive lock, so the processes of one installation that start together agree on one value).

Settings import this module: it imports nothing from Django.
"""
from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

NAMES = ("SECRET_KEY", "API_KEY_HMAC_SECRET", "APPLIANCE_METRICS_TOKEN")
MIN_LENGTH = 32
# Values that are published (this project's old defaults, the usual placeholders): never a production secret.
PUBLIC_VALUES = frozenset({
    "insecure-dev-key-change-me-in-production", "change-me", "changeme", "change_me", "secret", "password",
    "test-secret-key", "test-api-key-hmac-secret", "test-metrics-token",
})


class SecretsError(Exception):
    """The secrets cannot be used (a public value in production) or cannot be stored."""


@dataclass(frozen=True)
class Resolved:
    values: dict[str, str]
    sources: dict[str, str]  # name -> "environment" | "file" | "generated"
    path: Path


def generate() -> str:
    return secrets.token_urlsafe(48)


def parse(text: str) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, blank lines and optional quotes allowed), as systemd's EnvironmentFile."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def public_reason(name: str, value: str) -> str | None:
    """Why a value must not be used in production, or None."""
    if value.lower() in PUBLIC_VALUES or value.startswith(("django-insecure-", "insecure-")):
        return f"{name} is a public default value"
    if len(value) < MIN_LENGTH:
        return f"{name} is shorter than {MIN_LENGTH} characters"
    return None


def resolve(path: Path, environ: Mapping[str, str], names: tuple[str, ...] = NAMES) -> Resolved:
    """Each secret from the environment, else the file, else generated and stored in the file."""
    values = {n: environ[n] for n in names if environ.get(n)}
    sources = {n: "environment" for n in values}
    missing = [n for n in names if n not in values]
    if missing:
        stored, generated = _load_or_create(path, missing)
        values.update(stored)
        sources.update({n: ("generated" if n in generated else "file") for n in stored})
    return Resolved(values, sources, path)


def _load_or_create(path: Path, names: list[str]) -> tuple[dict[str, str], set[str]]:
    """(the named secrets, which of them were generated now)."""
    if path.is_file() and os.access(path, os.R_OK) and not os.access(path, os.W_OK):  # the AMI's root-owned 0640
        found = {k: v for k, v in parse(path.read_text()).items() if k in names and v}
        absent = [n for n in names if n not in found]
        if absent:
            raise SecretsError(f"{path} has no {', '.join(absent)} and is not writable: add "
                               f"{absent[0]}=<random value> to it or set {absent[0]} in the environment")
        return found, set()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SecretsError(f"cannot create the secrets file {path}: {exc.strerror}; set APPLIANCE_SECRETS_FILE to "
                           f"a writable place or {', '.join(names)} in the environment") from exc
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close: processes starting together make one value each
        os.fchmod(f.fileno(), 0o600)
        text = f.read()
        existing = parse(text)
        found = {n: existing[n] for n in names if existing.get(n)}
        generated = {n: generate() for n in names if n not in found}
        if generated:
            header = ("# This installation's secrets, made on its first start (appliance/secret_store.py).\n"
                      "# Keep this file private; an environment variable of the same name overrides a value here.\n")
            f.write(("" if not text else "" if text.endswith("\n") else "\n") + ("" if text else header)
                    + "".join(f"{n}={v}\n" for n, v in generated.items()))
            f.flush()
            os.fsync(f.fileno())
            found.update(generated)
    return found, set(generated)


def check_production(resolved: Resolved) -> None:
    """SecretsError naming every secret that is public or too weak to run in production."""
    problems = [r for n, v in resolved.values.items() if (r := public_reason(n, v))]
    if problems:
        raise SecretsError(
            "refusing to start in production mode (APPLIANCE_ENV=production): " + "; ".join(problems) + ". Unset it "
            f"to use the generated one in {resolved.path}, set a random value (e.g. `openssl rand -hex 32`), or set "
            "APPLIANCE_ENV=development on a development machine.")
