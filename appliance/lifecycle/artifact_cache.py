"""A node's cache of artifacts, filled from the fleet's artifact store; replicas load from here, never from the store.

An entry is `<cache>/<digest>/`, complete or absent: a fill copies into `<cache>/.fill-<digest>-*`, checks every file
against the manifest's sizes and sha256, then renames. A lock file per digest (flock) makes two replicas starting at
once on one node fill an entry once; the second waits and finds it. Entries beyond `max_bytes` are evicted least
recently used first (an entry's mtime is touched on every use), never one that a live replica uses.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .artifact_store import MANIFEST, ArtifactStore, sha256_file

log = logging.getLogger(__name__)

FILLING = ".fill-"
EVICTING = ".evict-"
LOCKS = ".locks"


class ArtifactIntegrityError(RuntimeError):
    """The store's copy of an artifact does not match its manifest; the message says which file and what to do."""


@dataclass(frozen=True)
class CacheFetch:
    path: Path
    filled: bool  # False: the entry was already cached on this node
    seconds: float


@dataclass
class ArtifactCache:
    root: Path
    max_bytes: int = 0  # 0: unbounded

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def entry(self, digest: str) -> Path:
        return self.root / digest

    def fetch(self, digest: str, store: ArtifactStore | Callable[[], ArtifactStore],
              keep: Iterable[str] = ()) -> CacheFetch:
        """The local directory of artifact `digest`, filled from `store` (or the store a callable returns, called
        only when a fill is needed: a cached artifact needs no store) first if this node has no complete copy; then
        evict down to max_bytes, sparing `keep` (the digests live replicas on this node use)."""
        _check_digest(digest)
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(digest):
            entry = self.entry(digest)
            filled = not self._intact(entry)
            if filled:
                self._discard(entry)
                self._fill(store() if callable(store) else store, digest)
            os.utime(entry)
        self.evict(keep={digest, *keep})
        return CacheFetch(entry, filled, time.monotonic() - started)

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove least recently used entries not in `keep` until the cache holds at most max_bytes; returns the
        digests removed. Leftovers of fills whose process died are removed too."""
        if not self.root.is_dir():
            return []
        self._remove_dead_fills()
        if not self.max_bytes:
            return []
        keep = set(keep)
        entries = [entry for p in self.root.iterdir() if not p.name.startswith(".") and (entry := _describe(p))]
        total = sum(size for _, _, size in entries)
        removed: list[str] = []
        for _, digest, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if digest in keep:
                continue
            with self._locked(digest, wait=False) as held:
                if held:  # an entry being filled or read right now is not evicted
                    self._discard(self.entry(digest))
                    total -= size
                    removed.append(digest)
        if removed:
            log.info("artifact cache %s: evicted %s (least recently used)", self.root, ", ".join(d[:12] for d in removed))
        if total > self.max_bytes:
            log.warning("artifact cache %s holds %d bytes, over its cap of %d: the rest is in use by live replicas",
                        self.root, total, self.max_bytes)
        return removed

    def _fill(self, store: ArtifactStore, digest: str) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f"{FILLING}{digest}-", dir=self.root))
        try:
            store.fetch_into(digest, staging)
            verify(staging, digest, store.uri(digest))
            os.rename(staging, self.entry(digest))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _intact(self, entry: Path) -> bool:
        """Present with every file of its manifest at the manifest's size (cheap: the checksums were verified when
        it was filled)."""
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            return all((entry / name).stat().st_size == meta["size"] for name, meta in manifest["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _discard(self, entry: Path) -> None:
        if entry.exists():
            doomed = self.root / f"{EVICTING}{entry.name}-{uuid.uuid4().hex[:8]}"
            os.rename(entry, doomed)  # gone from its name at once; deleting the files may take a while
            shutil.rmtree(doomed, ignore_errors=True)

    def _remove_dead_fills(self) -> None:
        for path in self.root.iterdir():
            if path.name.startswith(EVICTING):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(FILLING):
                digest = path.name[len(FILLING):].rsplit("-", 1)[0]
                with self._locked(digest, wait=False) as held:
                    if held:  # nobody is filling it: its process died
                        shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def _locked(self, digest: str, wait: bool = True) -> Iterator[bool]:
        locks = self.root / LOCKS
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{digest}.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def verify(path: Path, digest: str, source: str) -> None:
    """Every file the manifest lists is present with its size and sha256, and the manifest is this artifact's."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactIntegrityError(f"artifact {digest[:12]} at {source} has no readable {MANIFEST} ({exc}); "
                                     "queue its compile again") from exc
    if manifest.get("digest") != digest:
        raise ArtifactIntegrityError(f"artifact {digest[:12]} at {source}: its manifest names digest "
                                     f"{str(manifest.get('digest'))[:12]}; the store is mixed up, queue the compile again")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactIntegrityError(f"artifact {digest[:12]} at {source}: its manifest lists no files to verify; "
                                     "queue its compile again")
    for name, meta in sorted(files.items()):
        file = path / name
        problem = ""
        if not file.is_file():
            problem = "is missing"
        elif file.stat().st_size != meta.get("size"):
            problem = f"has {file.stat().st_size} bytes, the manifest says {meta.get('size')}"
        elif sha256_file(file) != meta.get("sha256"):
            problem = "does not match the manifest's sha256"
        if problem:
            raise ArtifactIntegrityError(f"artifact {digest[:12]} at {source}: file {name} {problem}; the stored copy "
                                         "is damaged, delete it from the store and queue the compile again")


def node_cache() -> ArtifactCache:
    """This node's cache: settings.ARTIFACT_CACHE_DIR (default APPLIANCE_HOME/artifact-cache), capped at
    settings.ARTIFACT_CACHE_MAX_BYTES."""
    from django.conf import settings

    root = Path(getattr(settings, "ARTIFACT_CACHE_DIR", "") or Path(settings.APPLIANCE_HOME) / "artifact-cache")
    store = str(settings.ARTIFACT_STORE_URL).removeprefix("file://")
    if not store.startswith("s3://") and root.resolve() == Path(store).resolve():
        raise ValueError(f"ARTIFACT_CACHE_DIR and ARTIFACT_STORE_URL are both {root}: the cache evicts what it holds, "
                         "so it must be a directory of its own")
    return ArtifactCache(root, int(getattr(settings, "ARTIFACT_CACHE_MAX_BYTES", 0) or 0))


def _describe(entry: Path) -> tuple[float, str, int] | None:
    """(last used, digest, bytes) of a cache entry; None when another process removed it meanwhile."""
    try:
        return entry.stat().st_mtime, entry.name, sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
    except FileNotFoundError:
        return None


def _check_digest(digest: str) -> None:
    if not digest or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(f"not an artifact digest: {digest!r}")
