"""A node's artifact cache: verified atomic fills from the store, one fill for two replicas starting at once, a fill
killed half way never used, least-recently-used eviction that spares live replicas, and model_dir reading from it."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from appliance.lifecycle.artifact_cache import ArtifactCache, ArtifactIntegrityError
from appliance.lifecycle.artifact_store import LocalArtifactStore, compute_digest
from appliance.lifecycle.converter import write_manifest


def stored_artifact(store: LocalArtifactStore, tmp_path: Path, name: str, size: int = 1000) -> str:
    """Put an artifact with a real manifest (sizes, sha256) into `store`; returns its digest."""
    digest = compute_digest(name, {}, "test")
    src = tmp_path / f"src-{name}"
    (src / "sub").mkdir(parents=True)
    (src / "model.safetensors").write_bytes(name.encode() * (size // len(name)))
    (src / "sub" / "tokenizer.json").write_text(json.dumps({"name": name}))
    write_manifest(src, digest, {}, "test", {})
    store.put_dir(digest, src)
    return digest


class CountingStore(LocalArtifactStore):
    """A local store that records each fetch in a file and takes `delay` seconds over it (test instrumentation)."""

    def __init__(self, root: Path, count_file: Path, delay: float = 0.0, hang_after_first_file: bool = False):
        super().__init__(root)
        self.count_file, self.delay, self.hang = count_file, delay, hang_after_first_file

    def fetch_into(self, digest: str, dest: Path) -> None:
        with open(self.count_file, "a") as f:
            f.write(f"{os.getpid()}\n")
        if self.hang:  # copy one file, then stall: the process is killed here, mid-fill
            (dest / "model.safetensors").write_bytes((self.root / digest / "model.safetensors").read_bytes())
            time.sleep(3600)
        time.sleep(self.delay)
        super().fetch_into(digest, dest)


def fetches(count_file: Path) -> int:
    return len(count_file.read_text().split()) if count_file.exists() else 0


def test_fill_copies_verified_files_and_the_next_fetch_uses_the_cached_copy(tmp_path):
    store = CountingStore(tmp_path / "store", tmp_path / "count")
    digest = stored_artifact(store, tmp_path, "alpha")
    cache = ArtifactCache(tmp_path / "cache")

    first = cache.fetch(digest, store)
    assert first.filled and first.path == tmp_path / "cache" / digest
    assert (first.path / "model.safetensors").read_bytes() == (store.root / digest / "model.safetensors").read_bytes()
    assert (first.path / "sub" / "tokenizer.json").is_file()
    second = cache.fetch(digest, lambda: pytest.fail("a cached artifact must not open the store"))
    assert not second.filled and second.path == first.path
    assert fetches(tmp_path / "count") == 1
    assert sorted(p.name for p in cache.root.iterdir() if not p.name.startswith(".locks")) == [digest]


def test_a_damaged_store_copy_is_refused_naming_the_file_and_leaves_no_cache_entry(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest = stored_artifact(store, tmp_path, "beta")
    weights = store.root / digest / "model.safetensors"
    weights.write_bytes(b"X" * weights.stat().st_size)  # same size, other bytes: only the checksum can tell
    cache = ArtifactCache(tmp_path / "cache")

    with pytest.raises(ArtifactIntegrityError, match="file model.safetensors does not match the manifest's sha256"):
        cache.fetch(digest, store)
    assert not cache.entry(digest).exists()
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".fill-")]


def test_an_artifact_missing_from_the_store_is_a_clear_error(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="is not in the store"):
        cache.fetch("ab" * 32, LocalArtifactStore(tmp_path / "store"))


def _fetch_in_child(cache_root, store_root, count_file, digest, barrier, results, delay=0.0, hang=False):
    barrier.wait()
    fetched = ArtifactCache(cache_root).fetch(digest, CountingStore(store_root, count_file, delay, hang))
    results.put((str(fetched.path), fetched.filled, (fetched.path / "model.safetensors").stat().st_size))


def test_two_replicas_starting_at_once_on_one_node_fill_the_entry_once(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest = stored_artifact(store, tmp_path, "gamma", size=200_000)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child, args=(tmp_path / "cache", store.root, tmp_path / "count", digest,
                                                       barrier, results, 0.5)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert fetches(tmp_path / "count") == 1  # the second waited on the lock and found the entry
    assert sorted(filled for _, filled, _ in outcomes) == [False, True]
    assert {path for path, _, _ in outcomes} == {str(tmp_path / "cache" / digest)}
    assert {size for _, _, size in outcomes} == {(store.root / digest / "model.safetensors").stat().st_size}


def test_a_fill_killed_half_way_is_never_used_and_its_leftovers_are_removed(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest = stored_artifact(store, tmp_path, "delta")
    cache = ArtifactCache(tmp_path / "cache")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(1), ctx.Queue()
    child = ctx.Process(target=_fetch_in_child, args=(cache.root, store.root, tmp_path / "count", digest, barrier,
                                                      results, 0.0, True))
    child.start()
    deadline = time.monotonic() + 30
    while not [p for p in cache.root.glob(".fill-*") if (p / "model.safetensors").exists()]:
        assert time.monotonic() < deadline, "the child never started its fill"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)

    assert not cache.entry(digest).exists()  # the half-copied directory is not under the digest
    fetched = cache.fetch(digest, store)  # the dead process's lock died with it
    assert fetched.filled and (fetched.path / "sub" / "tokenizer.json").is_file()
    assert not list(cache.root.glob(".fill-*"))


def test_eviction_removes_least_recently_used_entries_but_never_one_a_live_replica_uses(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    a, b, c, d = (stored_artifact(store, tmp_path, name, size=10_000) for name in ("aa", "bb", "cc", "dd"))
    cache = ArtifactCache(tmp_path / "cache", max_bytes=25_000)  # room for two entries

    for digest in (a, b):
        cache.fetch(digest, store)
        time.sleep(0.02)
    cache.fetch(a, store)  # a used again: b is now the least recently used
    time.sleep(0.02)
    cache.fetch(c, store)
    assert {p.name for p in cache.root.iterdir() if not p.name.startswith(".")} == {a, c}

    time.sleep(0.02)
    cache.fetch(d, store, keep={a})  # a is older than c, but a live replica runs it
    assert {p.name for p in cache.root.iterdir() if not p.name.startswith(".")} == {a, d}

    time.sleep(0.02)
    cache.fetch(b, store, keep={a, d})  # all in use: over the cap rather than pull an artifact from under a replica
    assert {p.name for p in cache.root.iterdir() if not p.name.startswith(".")} == {a, b, d}


def test_a_cache_dir_that_is_the_store_itself_is_refused(lc_home, settings):
    from appliance.lifecycle.artifact_cache import node_cache

    settings.ARTIFACT_CACHE_DIR = settings.ARTIFACT_STORE_URL
    with pytest.raises(ValueError, match="must be a directory of its own"):
        node_cache()


@pytest.mark.django_db
def test_model_dir_serves_a_path_store_artifact_from_the_node_cache(lc_home, settings):
    from appliance.catalog.models import Artifact, Deployment, Model, ModelVersion
    from appliance.lifecycle.agent.node_agent import model_dir

    store = LocalArtifactStore(Path(settings.ARTIFACT_STORE_URL))
    digest = stored_artifact(store, lc_home, "epsilon")
    version = ModelVersion.objects.create(model=Model.objects.create(name="eps"), version=1, source_uri="/nowhere")
    artifact = Artifact.objects.create(digest=digest, model_version=version, target="cpu", uri=store.uri(digest))
    dep = Deployment.objects.create(name="eps", model_version=version, artifact=artifact)

    path = Path(model_dir(dep))
    assert path == lc_home / "artifact-cache" / digest
    assert json.loads((path / "sub" / "tokenizer.json").read_text()) == {"name": "epsilon"}

    settings.ARTIFACT_STORE_URL = str(lc_home / "elsewhere")  # the setting changed since: the row's URI still works
    settings.ARTIFACT_CACHE_DIR = str(lc_home / "other-cache")
    assert Path(model_dir(dep)) == lc_home / "other-cache" / digest


@pytest.mark.django_db(transaction=True)
def test_a_node_keeps_heartbeating_while_a_slow_first_fill_holds_up_its_agent(lc_home, settings, monkeypatch):
    from django.utils import timezone

    from appliance.catalog.models import Artifact, Deployment, Model, ModelVersion, Node
    from appliance.lifecycle import artifact_store
    from appliance.lifecycle.agent.node_agent import model_dir

    slow = CountingStore(Path(settings.ARTIFACT_STORE_URL), lc_home / "count", delay=2.5)
    digest = stored_artifact(slow, lc_home, "zeta")
    monkeypatch.setattr(artifact_store, "get_store", lambda url=None: slow)
    settings.NODE_LOST_AFTER_S = 1.5  # beats every 0.5 s
    node = Node.objects.create(name="lc-node", cores=2, last_heartbeat=timezone.now())
    version = ModelVersion.objects.create(model=Model.objects.create(name="zeta"), version=1, source_uri="/nowhere")
    dep = Deployment.objects.create(name="zeta", model_version=version, artifact=Artifact.objects.create(
        digest=digest, model_version=version, target="cpu", uri=slow.uri(digest)))

    before = Node.objects.get(pk=node.pk).last_heartbeat
    started = timezone.now()
    model_dir(dep, node)
    beat = Node.objects.get(pk=node.pk).last_heartbeat
    assert fetches(lc_home / "count") == 1
    assert beat > before and (beat - started).total_seconds() >= 1.5  # it beat during the fill, not only before


@pytest.mark.celery
def test_replicas_of_a_compiled_deployment_start_from_the_node_cache(
        start_worker, start_agent, register_version, tiny_llama, lc_home):
    from appliance.catalog.models import Replica
    from appliance.lifecycle.models import CompileJob
    from appliance.lifecycle.services import deploy

    from .conftest import wait_until

    start_worker()
    register_version("tiny", tiny_llama)
    result = deploy("tiny", replicas=2, cores_per_replica=1)
    job = wait_until(lambda: CompileJob.objects.filter(pk=result.compile_job.pk, status="succeeded").first(), 120,
                     "the compile")
    start_agent(cores=2)
    ready = wait_until(lambda: (rows := list(Replica.objects.filter(deployment=result.deployment, state="ready")))
                       and len(rows) == 2 and rows, 180, "2 ready replicas")

    entry = lc_home / "artifact-cache" / job.artifact.digest
    assert sorted(p.name for p in (lc_home / "artifact-cache").iterdir() if not p.name.startswith(".")) == [entry.name]
    for replica in ready:
        cmdline = Path(f"/proc/{replica.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--model") + 1].decode() == str(entry)
        assert replica.cold_start_phases["artifact_fetch"] >= 0
