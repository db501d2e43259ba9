"""Which EC2 instance this is, from the instance metadata service (IMDSv2: a session token, then the metadata).

APPLIANCE_IMDS_URL points elsewhere (tests use a local stand-in server); off EC2 the link-local address does not
answer, so every call has a short timeout and failures raise InstanceTypeUnknown with the reason.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request

IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 300


class InstanceTypeUnknown(RuntimeError):
    """The metadata service did not say which instance type this is (not on EC2, IMDS disabled, or a timeout)."""


def imds_url() -> str:
    return os.environ.get("APPLIANCE_IMDS_URL", IMDS_URL).rstrip("/")


def _call(request: urllib.request.Request, timeout_s: float) -> str:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - fixed http(s) URL
            return resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        raise InstanceTypeUnknown(f"{request.get_method()} {request.full_url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InstanceTypeUnknown(f"{request.get_method()} {request.full_url}: {reason} (not on EC2?)") from exc


def instance_type(base_url: str | None = None, timeout_s: float = 2.0) -> str:
    """The instance type (e.g. "inf2.xlarge"): PUT /latest/api/token, then GET /latest/meta-data/instance-type."""
    base = (base_url or imds_url()).rstrip("/")
    token = _call(urllib.request.Request(
        f"{base}/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)}), timeout_s)
    found = _call(urllib.request.Request(
        f"{base}/latest/meta-data/instance-type", headers={"X-aws-ec2-metadata-token": token}), timeout_s)
    if not found:
        raise InstanceTypeUnknown(f"{base}/latest/meta-data/instance-type answered an empty instance type")
    return found
