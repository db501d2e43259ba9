"""The replica's credential: a per-replica secret that every call to its internal server carries as
``Authorization: Bearer <secret>``, checked in constant time. The gateway is the only way to a replica.

The node agent makes a new secret for each launch, passes it in the process's environment (``APPLIANCE_REPLICA_SECRET``;
the command line is readable by every local user through /proc, the environment only by the same user) and stores it
on the Replica row, where the gateway and the control plane's scrapers read the replica's address.
"""
from __future__ import annotations

import hmac
import os
import secrets
from typing import Any

SECRET_ENV = "APPLIANCE_REPLICA_SECRET"
_PREFIX = b"bearer "


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def take_secret_from_env() -> str | None:
    """The secret this process was started with, removed from its environment (so nothing it starts inherits it)."""
    return os.environ.pop(SECRET_ENV, None) or None


def bearer(secret: str | None) -> dict[str, str]:
    """The header a caller sends (none for an open replica)."""
    return {"Authorization": f"Bearer {secret}"} if secret else {}


def authorized(scope: dict[str, Any], secret: bytes | None) -> bool:
    """Whether an ASGI request carries the secret (always, when the replica has none)."""
    if secret is None:
        return True
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return value[:len(_PREFIX)].lower() == _PREFIX and hmac.compare_digest(value[len(_PREFIX):].strip(), secret)
    return False
