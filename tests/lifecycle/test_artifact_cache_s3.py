"""The S3 artifact store over real HTTP, into a node's cache. The S3 endpoint is moto's server (`moto_server`, a
local S3-compatible HTTP server from PyPI) on loopback: a labelled stand-in for S3, not AWS."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lifecycle.artifact_cache import ArtifactCache, ArtifactIntegrityError
from appliance.lifecycle.artifact_store import S3ArtifactStore


@pytest.fixture
def s3_server(monkeypatch, tmp_path):
    """A moto S3 server on a free loopback port (stand-in for S3) with bucket `artifacts`; yields a boto3 client."""
    pytest.importorskip("flask", reason="moto[server] is not installed (requirements-dev.txt has it)")
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "moto.log", "wb")
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "moto.log").read_text()
            time.sleep(0.2)
    client = boto3.client("s3")
    client.create_bucket(Bucket="artifacts")
    yield client
    server.terminate()
    server.wait(10)
    log.close()


@pytest.mark.django_db
def test_compile_into_s3_over_http_then_each_node_fills_its_cache_once_and_verifies_it(
        s3_server, settings, lc_home, register_version, tiny_llama):
    from appliance.catalog.models import Deployment
    from appliance.lifecycle.agent.node_agent import model_dir
    from appliance.lifecycle.compile_runner import run_compile_job
    from appliance.lifecycle.models import CompileJob

    settings.ARTIFACT_STORE_URL = "s3://artifacts/fleet"
    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama))
    assert run_compile_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.artifact.uri == f"s3://artifacts/fleet/{job.digest}"
    dep = Deployment.objects.create(name="tiny", model_version=job.model_version, artifact=job.artifact)

    local = Path(model_dir(dep))
    assert local == lc_home / "artifact-cache" / job.digest
    manifest = json.loads((local / "manifest.json").read_text())
    assert manifest["digest"] == job.digest and set(manifest["files"]) <= {
        p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}

    key = f"fleet/{job.digest}/model.safetensors"
    size = s3_server.head_object(Bucket="artifacts", Key=key)["ContentLength"]
    s3_server.put_object(Bucket="artifacts", Key=key, Body=b"\0" * size)  # the store's copy goes bad
    assert Path(model_dir(dep)) == local  # this node verified its copy when it filled it: no second download
    other_node = ArtifactCache(lc_home / "node-b-cache")
    with pytest.raises(ArtifactIntegrityError, match="file model.safetensors does not match the manifest's sha256"):
        other_node.fetch(job.digest, S3ArtifactStore("artifacts", "fleet"))
    assert not other_node.entry(job.digest).exists()
