"""A full disk under the artifact store and under the Files API's storage: a small tmpfs mounted there (the suite
runs as root in CI; elsewhere it is skipped, saying why). Each gets a clean error and leaves nothing half-written;
once there is room again the same operation succeeds."""
from __future__ import annotations

import io
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from .conftest import MODEL, Stack

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@contextmanager
def tiny_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_compile_onto_a_full_artifact_store_fails_cleanly_and_leaves_nothing(stack: Stack, fault_report,
                                                                             tmp_path):
    t0 = time.monotonic()
    with tiny_disk(tmp_path / "store", "256k") as store:  # the converted checkpoint is ~600 kB
        env = {**stack.env, "ARTIFACT_STORE_URL": str(store)}
        stack.env, saved = env, stack.env
        try:
            full = stack.seed(op="compile", model=MODEL)
        finally:
            stack.env = saved
        left = sorted(p.name for p in store.iterdir())
    staging = list((stack.home / "compile-staging").glob("*"))
    answered = int(full["status"] == "failed" and "no space left" in full["error"] and not left and not staging)
    fault_report.add("artifact store disk full during a compile", 1, 1, answered,
                     "the job failed at once saying the disk is full and what to free; no half-written artifact "
                     "or staging files", time.monotonic() - t0)
    assert full["status"] == "failed" and full["artifact"] is None, full
    assert "no space left" in full["error"] and "free space" in full["error"], full["error"]
    assert not left and not staging, (left, staging)


def test_file_upload_onto_a_full_disk_is_refused_and_leaves_nothing(stack: Stack, fault_report):
    caller = stack.key()
    files_dir = stack.home / "files"
    t0 = time.monotonic()
    data = b"".join(b'{"custom_id": "c%d", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' % i
                    for i in range(4000))  # ~330 kB
    before = stack.pg.query("SELECT count(*) FROM jobs_file")[0][0]
    with openai.OpenAI(base_url=stack.v1, api_key=caller["key"], max_retries=0, timeout=60) as client:
        with tiny_disk(files_dir, "128k"):
            with pytest.raises(openai.APIStatusError) as refused:
                client.files.create(file=("big.jsonl", io.BytesIO(data)), purpose="batch")
            left = os.listdir(files_dir)
        stored = client.files.create(file=("big.jsonl", io.BytesIO(data)), purpose="batch")  # room again
    rows = stack.pg.query("SELECT count(*) FROM jobs_file")[0][0] - before
    error = refused.value
    clean = error.status_code == 507 and error.body.get("code") == "insufficient_storage" and not left
    fault_report.add("Files API upload onto a full disk", 1, 2, int(clean) + int(stored.bytes == len(data)),
                     "507 insufficient_storage in OpenAI's error shape, no partial file and no row; the same upload "
                     "succeeds once there is room", time.monotonic() - t0)
    assert error.status_code == 507 and error.body["code"] == "insufficient_storage", (error.status_code,
                                                                                       error.body)
    assert not left, f"half-written files left behind: {left}"
    assert rows == 1 and stored.bytes == len(data)
