"""Merged models in S3-compatible storage, against a real S3 API server on loopback (moto server mode)."""

from __future__ import annotations

import uuid

import pytest

from divtune import storage
from divtune.errors import DivtuneError


@pytest.fixture(autouse=True)
def _aws(aws_env):
    return aws_env


@pytest.fixture
def bucket(s3_endpoint):
    name = f"divtune-{uuid.uuid4().hex[:8]}"
    storage.client().create_bucket(Bucket=name)
    return name


def _model_dir(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "qwen2"}')
    (d / "model.safetensors").write_bytes(b"\x00" * 4096 + b"weights")
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


def test_upload_download_roundtrip_with_manifest(tmp_path, bucket):
    src = _model_dir(tmp_path)
    uri = f"s3://{bucket}/models/m/run-1"
    manifest = storage.upload_dir(src, uri)
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "sub/tokenizer.json"}
    keys = {o["Key"] for o in storage.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"models/m/run-1/{storage.MANIFEST}" in keys
    out = storage.download_dir(uri, tmp_path / "back")
    for name in manifest["files"]:
        assert (out / name).read_bytes() == (src / name).read_bytes()


def test_missing_bucket_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(DivtuneError, match="bucket 'no-such-bucket-divtune' does not exist"):
        storage.upload_dir(_model_dir(tmp_path), "s3://no-such-bucket-divtune/x")


def test_incomplete_upload_is_refused(tmp_path, bucket):
    storage.client().put_object(Bucket=bucket, Key="half/model.safetensors", Body=b"partial")
    with pytest.raises(DivtuneError, match="no complete divtune upload"):
        storage.download_dir(f"s3://{bucket}/half", tmp_path / "x")


def test_unreachable_endpoint_retries_then_fails_cleanly(tmp_path):
    with pytest.raises(DivtuneError, match="endpoint unreachable after retries"):
        storage.upload_dir(_model_dir(tmp_path), "s3://b/x", endpoint_url="http://127.0.0.1:9", max_attempts=2)


def test_bad_uris():
    with pytest.raises(DivtuneError, match="not an s3:// URI"):
        storage.parse_s3_uri("/tmp/x")
    with pytest.raises(DivtuneError, match="no bucket"):
        storage.parse_s3_uri("s3:///x")


def test_registered_version_points_at_s3_and_downloads(tmp_path, bucket):
    from divtune.registry import models as reg

    uri = f"s3://{bucket}/models/reg/run-2"
    storage.upload_dir(_model_dir(tmp_path), uri)
    name = f"s3-model-{uuid.uuid4().hex[:6]}"
    mv = reg.register_version(name, uri, None, uuid.uuid4().hex, {"divtune.decision": "promote"})
    reg.set_alias(name, reg.CHAMPION, mv.version)
    got = reg.download_model_version(f"models:/{name}@champion", tmp_path / "dl")
    assert (got / "model.safetensors").read_bytes().endswith(b"weights")
