"""The artifact store: atomic local writes, and S3 through boto3 (against moto's in-process S3, not AWS)."""
from __future__ import annotations

import json

import pytest

from appliance.lifecycle.artifact_store import LocalArtifactStore, S3ArtifactStore, compute_digest


def make_artifact(path, text="weights"):
    path.mkdir(parents=True)
    (path / "model.safetensors").write_text(text)
    (path / "sub").mkdir()
    (path / "sub" / "tokenizer.json").write_text("{}")
    (path / "manifest.json").write_text(json.dumps({"digest": "d"}))
    return path


def test_digest_changes_with_weights_options_and_toolchain():
    base = compute_digest("w1", {"dtype": "float32"}, "tc1")
    assert base == compute_digest("w1", {"dtype": "float32"}, "tc1")
    others = {compute_digest("w2", {"dtype": "float32"}, "tc1"), compute_digest("w1", {"dtype": "bfloat16"}, "tc1"),
              compute_digest("w1", {"dtype": "float32"}, "tc2")}
    assert len(others | {base}) == 4


def test_local_store_is_atomic_and_keeps_the_first_copy(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    assert not store.exists("abc")
    uri = store.put_dir("abc", make_artifact(tmp_path / "a"))
    assert store.exists("abc") and (tmp_path / "store" / "abc" / "sub" / "tokenizer.json").is_file()
    assert store.put_dir("abc", make_artifact(tmp_path / "b", "other")) == uri
    assert (tmp_path / "store" / "abc" / "model.safetensors").read_text() == "weights"
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".incoming")]


@pytest.fixture
def s3(s3_client):
    s3_client.create_bucket(Bucket="artifacts")
    return s3_client


def test_s3_store_round_trip(s3, tmp_path):
    store = S3ArtifactStore("artifacts", "appliance")
    assert not store.exists("abc")
    assert store.put_dir("abc", make_artifact(tmp_path / "a")) == "s3://artifacts/appliance/abc"
    assert store.exists("abc")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"])
    assert keys == [f"appliance/abc/{name}" for name in ("manifest.json", "model.safetensors", "sub/tokenizer.json")]
    local = tmp_path / "fetched"
    local.mkdir()
    store.fetch_into("abc", local)
    assert (local / "model.safetensors").read_text() == "weights" and (local / "sub" / "tokenizer.json").is_file()


@pytest.mark.django_db
def test_compile_into_s3_then_cache_hit_and_replica_reads_a_local_copy(
        s3, settings, lc_home, register_version, tiny_llama):
    from appliance.catalog.models import Deployment
    from appliance.lifecycle.agent.node_agent import model_dir
    from appliance.lifecycle.compile_runner import run_compile_job
    from appliance.lifecycle.models import CompileJob

    settings.ARTIFACT_STORE_URL = "s3://artifacts/appliance"
    version = register_version("tiny", tiny_llama)
    first = CompileJob.objects.create(model_version=version)
    assert run_compile_job(first.pk) == "succeeded"
    first.refresh_from_db()
    assert first.artifact.uri == f"s3://artifacts/appliance/{first.digest}" and first.artifact.size_bytes > 0
    second = CompileJob.objects.create(model_version=version)
    assert run_compile_job(second.pk) == "cache hit"
    dep = Deployment.objects.create(name="tiny", model_version=version, artifact=first.artifact)
    local = model_dir(dep)
    assert local == str(lc_home / "artifact-cache" / first.digest) and json.load(open(f"{local}/manifest.json"))["digest"] == first.digest
