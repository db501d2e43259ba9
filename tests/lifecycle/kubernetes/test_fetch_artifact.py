"""The replica pod's init container: fetch_artifact downloads an s3:// artifact where the engine container reads it
(against moto's in-process S3, not AWS)."""
from __future__ import annotations

import pytest

from appliance.lifecycle.artifact_store import S3ArtifactStore
from appliance.lifecycle.converter import write_manifest
from appliance.lifecycle.kubernetes.fetch_artifact import main, split_uri


@pytest.fixture
def bucket(s3_client):
    s3_client.create_bucket(Bucket="models-bucket")
    return "models-bucket"


def test_split_uri_names_bucket_prefix_and_digest():
    assert split_uri("s3://b/one/two/abc") == ("b", "one/two", "abc")
    assert split_uri("s3://b/abc") == ("b", "", "abc")
    with pytest.raises(ValueError, match="expected an s3:// artifact URI"):
        split_uri("/models/abc")


def test_the_artifact_lands_where_the_engine_loads_it(bucket, tmp_path, capsys):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "model.safetensors").write_text("weights")
    (source / "sub" / "tokenizer.json").write_text("{}")
    write_manifest(source, "d1", {}, "test", {})
    uri = S3ArtifactStore(bucket, "artifacts").put_dir("d1", source)
    dest = tmp_path / "cache" / "d1"
    assert main([uri, str(dest)]) == 0
    assert (dest / "model.safetensors").read_text() == "weights" and (dest / "sub" / "tokenizer.json").is_file()
    assert f"fetched {uri}" in capsys.readouterr().out


def test_a_damaged_artifact_fails_the_init_container_and_leaves_nothing_to_load(bucket, tmp_path, capsys):
    import boto3

    source = tmp_path / "src"
    source.mkdir()
    (source / "model.safetensors").write_text("weights")
    write_manifest(source, "d2", {}, "test", {})
    uri = S3ArtifactStore(bucket, "artifacts").put_dir("d2", source)
    boto3.client("s3").put_object(Bucket=bucket, Key="artifacts/d2/model.safetensors", Body=b"WEIGHTS")
    dest = tmp_path / "cache" / "d2"
    assert main([uri, str(dest)]) == 1
    assert "file model.safetensors does not match the manifest's sha256" in capsys.readouterr().err
    assert not dest.exists()


def test_a_missing_artifact_fails_the_init_container_with_the_reason(bucket, tmp_path, capsys):
    assert main([f"s3://{bucket}/artifacts/nope", str(tmp_path / "cache" / "nope")]) == 1
    assert "no complete artifact at s3://models-bucket/artifacts/nope" in capsys.readouterr().err
