"""Content-addressed artifact store: a directory (default; shared between nodes over NFS/EFS in a fleet) or S3
(``s3://bucket/prefix``, needs boto3).

An artifact is a directory of files stored under its digest. Writes are atomic: a half-written artifact is never
visible under its digest, so a worker killed mid-upload leaves nothing a later job could mistake for a result.
Replicas never read the store directly: each node copies an artifact into its own cache first
(appliance.lifecycle.artifact_cache), which verifies the manifest's checksums.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MANIFEST = "manifest.json"


def compute_digest(weights_checksum: str, options: dict[str, Any], toolchain: str) -> str:
    """sha256 over the weights' checksum, the compile options and the toolchain version."""
    payload = json.dumps(
        {"weights": weights_checksum, "options": options, "toolchain": toolchain}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ArtifactStore(Protocol):
    def exists(self, digest: str) -> bool: ...

    def put_dir(self, digest: str, src: Path) -> str:
        """Store the directory `src` under `digest` (atomically) and return the artifact's URI."""
        ...

    def fetch_into(self, digest: str, dest: Path) -> None:
        """Copy the artifact's files into the existing empty directory `dest` (unverified: the cache verifies)."""
        ...

    def uri(self, digest: str) -> str: ...


def copy_dir(src: Path, dst: Path) -> None:
    """shutil.copytree, except that the first failure raises as it is (errno intact: a full disk is ENOSPC) rather
    than after trying every other file."""
    dst.mkdir(parents=True)
    for path in sorted(Path(src).rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def link_or_copy_dir(src: Path, dst: Path) -> None:
    """Fill the existing directory `dst` with `src`'s files: hard links where both are on one filesystem (an
    artifact is immutable, so a link costs no space), copies elsewhere (a store on NFS, a cache on local disk)."""
    for path in sorted(Path(src).rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copy2(path, target)


@dataclass
class LocalArtifactStore:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def uri(self, digest: str) -> str:
        return str(self.root / digest)

    def exists(self, digest: str) -> bool:
        return (self.root / digest / MANIFEST).is_file()

    def put_dir(self, digest: str, src: Path) -> str:
        final = self.root / digest
        if self.exists(digest):
            return str(final)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".incoming-{digest[:16]}-{uuid.uuid4().hex[:8]}"
        try:
            copy_dir(src, staging)  # a full disk fails here: nothing half-written is left behind
            os.rename(staging, final)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not self.exists(digest):
                raise
        return str(final)

    def fetch_into(self, digest: str, dest: Path) -> None:
        if not self.exists(digest):
            raise FileNotFoundError(errno.ENOENT, f"artifact {digest[:12]} is not in the store", str(self.root / digest))
        link_or_copy_dir(self.root / digest, Path(dest))


@dataclass
class S3ArtifactStore:
    """Artifacts under s3://bucket/prefix/<digest>/...; the manifest is uploaded last, so it marks completeness."""

    bucket: str
    prefix: str

    def _client(self):
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "ARTIFACT_STORE_URL is an s3:// URL but boto3 is not installed (pip install boto3)"
            ) from exc
        return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, digest: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, digest, name) if p)

    def uri(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self._key(digest)}"

    def exists(self, digest: str) -> bool:
        client = self._client()
        try:
            client.head_object(Bucket=self.bucket, Key=self._key(digest, MANIFEST))
            return True
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise

    def put_dir(self, digest: str, src: Path) -> str:
        client = self._client()
        files = sorted(p for p in Path(src).rglob("*") if p.is_file())
        for path in [p for p in files if p.name != MANIFEST] + [p for p in files if p.name == MANIFEST]:
            client.upload_file(str(path), self.bucket, self._key(digest, path.relative_to(src).as_posix()))
        return self.uri(digest)

    def fetch_into(self, digest: str, dest: Path) -> None:
        if not self.exists(digest):
            raise FileNotFoundError(errno.ENOENT, f"artifact {digest[:12]} is not in the store", self.uri(digest))
        client = self._client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(digest) + "/"):
            for obj in page.get("Contents", []):
                target = Path(dest) / obj["Key"][len(self._key(digest)) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.bucket, obj["Key"], str(target))


def get_store(url: str | None = None) -> ArtifactStore:
    """The store named by `url` (default: settings.ARTIFACT_STORE_URL)."""
    from django.conf import settings

    url = url or settings.ARTIFACT_STORE_URL
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3ArtifactStore(bucket, prefix.strip("/"))
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalArtifactStore(Path(url))


def store_of(artifact_uri: str) -> tuple[ArtifactStore, str]:
    """The store holding the artifact at `artifact_uri` (as recorded on its Artifact row), and its digest."""
    parent, _, digest = artifact_uri.rstrip("/").rpartition("/")
    if not digest or not parent:
        raise ValueError(f"artifact URI {artifact_uri!r} does not end in a digest")
    return get_store(parent), digest
