"""python -m appliance.lifecycle.kubernetes.fetch_artifact s3://BUCKET/PREFIX/DIGEST DEST

A replica pod's init container: download one artifact from the S3 artifact store into DEST (an emptyDir the engine
container mounts), with the node cache's fill: staged beside DEST, every file checked against the manifest's sha256,
then renamed. No Django: credentials come from the pod (IRSA on EKS), AWS_ENDPOINT_URL as the store reads it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..artifact_cache import ArtifactCache
from ..artifact_store import MANIFEST, S3ArtifactStore


def split_uri(uri: str) -> tuple[str, str, str]:
    """(bucket, prefix, digest) of s3://bucket/prefix/digest."""
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// artifact URI, got {uri!r}")
    bucket, _, key = uri[len("s3://"):].strip("/").partition("/")
    prefix, _, digest = key.rpartition("/")
    if not bucket or not digest:
        raise ValueError(f"expected s3://BUCKET/[PREFIX/]DIGEST, got {uri!r}")
    return bucket, prefix, digest


def fetch(uri: str, dest: Path) -> Path:
    """Download the artifact at `uri` into `dest`; raise if the store holds no complete artifact there."""
    bucket, prefix, digest = split_uri(uri)
    store = S3ArtifactStore(bucket, prefix)
    if not store.exists(digest):
        raise FileNotFoundError(f"no complete artifact at {uri} (its {MANIFEST} is missing)")
    local = ArtifactCache(dest.parent).fetch(digest, store).path
    if local != dest:
        os.rename(local, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    try:
        path = fetch(args[0], Path(args[1]))
    except Exception as exc:  # noqa: BLE001 - the pod's termination message says why
        print(f"FAILED fetching {args[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"fetched {args[0]} into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
