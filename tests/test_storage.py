"""Merged models in S3-compatible storage, against a real S3 API server on loopback (moto server mode)."""

from __future__ import annotations

import uuid

import pytest

from divtune import storage
from divtune.errors import DivtuneError
from support import one_error_line


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


# ---------------------------------------------------------------------------------------------------------
# bad input against the S3 server: wrong credentials, missing bucket, unreachable endpoint, a failed upload
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def s3_auth(s3_endpoint):
    """moto's server accepts any key by default; this turns its IAM authentication on (``/moto-api/reset-auth``,
    what ``INITIAL_NO_AUTH_ACTION_COUNT=0`` does at start-up) and makes IAM users with keys and S3 policies."""
    import json

    import boto3
    import requests

    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    users = []

    def make_user(*deny_put: str) -> dict[str, str]:  # may do everything in S3 except PutObject on deny_put ARNs
        name = f"divtune-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        stmts = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]
        if deny_put:
            stmts.append({"Effect": "Deny", "Action": "s3:PutObject", "Resource": list(deny_put)})
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": stmts}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users.append(name)
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def enable() -> None:
        requests.post(f"{s3_endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()

    try:
        yield make_user, enable
    finally:
        requests.post(f"{s3_endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


def _use_credentials(monkeypatch, **creds: str) -> None:
    """Set the environment's AWS keys for this process: boto3's default session caches the first it resolved."""
    import boto3

    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _keys(bucket: str) -> list[str]:
    return [o["Key"] for o in storage.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def _registered_versions() -> int:
    from divtune.registry import tracking

    return len(tracking.client().search_model_versions(""))


def test_wrong_credentials_are_rejected_once_authentication_is_on(tmp_path, bucket, s3_auth, monkeypatch):
    make_user, enable = s3_auth
    good = make_user()
    enable()
    _use_credentials(monkeypatch, **good)
    uri = f"s3://{bucket}/auth/ok"
    src = _model_dir(tmp_path)
    storage.upload_dir(src, uri)  # the right key works: authentication is really on
    _use_credentials(monkeypatch, AWS_SECRET_ACCESS_KEY="not-the-secret")
    with pytest.raises(DivtuneError, match=rf"cannot upload to s3://{bucket}/auth/bad: access denied \(check creden"):
        storage.upload_dir(src, f"s3://{bucket}/auth/bad")
    with pytest.raises(DivtuneError, match="cannot download .*wrong credentials|cannot download .*access denied"):
        storage.download_dir(uri, tmp_path / "dl")
    _use_credentials(monkeypatch, AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000")  # a key the server does not know
    with pytest.raises(DivtuneError, match="access denied|wrong credentials"):
        storage.upload_dir(src, f"s3://{bucket}/auth/bad")
    _use_credentials(monkeypatch, **good)
    assert not any(k.startswith("auth/bad/") for k in _keys(bucket))


def test_run_with_wrong_credentials_or_missing_bucket_fails_before_anything_runs(bucket, s3_auth, monkeypatch, cli):
    """``divtune run`` checks the bucket before the first step: one line, exit 2, nothing in the bucket, no
    registered model version (the unreachable endpoint: tests/test_bad_input_table.py)."""
    make_user, enable = s3_auth
    good = make_user()
    enable()
    before = _registered_versions()
    bad_env = {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    res = cli("run", "--set", f"storage.models_uri=s3://{bucket}/models", "--set", "registry.model_name=s3-auth",
              env=bad_env)
    line = one_error_line(res)
    assert f"s3://{bucket}/models" in line and "access denied (check credentials)" in line, line
    res = cli("run", "--set", "storage.models_uri=s3://no-such-bucket-divtune/models", env=good)
    line = one_error_line(res)
    assert "s3://no-such-bucket-divtune/models" in line and "does not exist" in line, line
    _use_credentials(monkeypatch, **good)
    assert _keys(bucket) == [] and _registered_versions() == before


def test_failed_upload_in_the_merge_stage_leaves_nothing_and_registers_nothing(tmp_path, bucket, s3_auth, monkeypatch,
                                                                               toy_model_dir):
    """The object store refuses the weights half-way through the upload (a policy denies ``*.safetensors``):
    the merge stage fails with one line, the files it had written are deleted, no manifest, nothing registered."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from divtune import paths, stages
    from divtune.config import load_config
    from divtune.registry import tracking

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(toy_model_dir)
    get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    make_user, enable = s3_auth
    creds = make_user(f"arn:aws:s3:::{bucket}/*.safetensors")
    cfg = load_config("toy", overrides=[f"storage.models_uri=s3://{bucket}/models", "registry.model_name=s3-half",
                                        "registry.experiment=s3-half"])
    key = f"half-{uuid.uuid4().hex[:6]}"
    stages.open_run(cfg.to_yaml(), key)
    enable()
    _use_credentials(monkeypatch, **creds)
    before = _registered_versions()
    with pytest.raises(DivtuneError) as ei:
        stages.merge(cfg.to_yaml(), key, str(toy_model_dir), str(adapter), str(tmp_path / "merged"))
    msg = str(ei.value)
    assert msg.startswith(f"cannot upload to s3://{bucket}/models/s3-half/{key}: access denied") and "\n" not in msg
    # the merge itself succeeded (built in the cache), the upload did not: neither the build nor the step's artifact
    # (a pointer to the upload, written only after it) is left behind
    assert not (tmp_path / "merged").exists()
    assert not any((paths.home() / "tmp").glob("merged-*"))
    assert _keys(bucket) == []  # config.json etc. went up before the weights were refused, and were deleted
    assert tracking.find_stage_run("s3-half", key, "merge_lora").info.status == "FAILED"
    assert _registered_versions() == before


def test_unreachable_endpoint_is_retried_with_backoff(tmp_path, monkeypatch):
    """boto3's retries (standard mode, exponential backoff): several sends, then one line."""
    import time

    sends = []
    real = storage.client

    def counting(endpoint_url=None, max_attempts=5):
        c = real(endpoint_url, max_attempts)
        c.meta.events.register("before-send.s3", lambda **kw: sends.append(time.monotonic()))
        return c

    monkeypatch.setattr(storage, "client", counting)
    with pytest.raises(DivtuneError) as ei:
        storage.upload_dir(_model_dir(tmp_path), "s3://b-unreachable/x", endpoint_url="http://127.0.0.1:9",
                           max_attempts=3)
    assert str(ei.value) == ("cannot upload to s3://b-unreachable/x: endpoint unreachable after retries "
                             "(http://127.0.0.1:9/b-unreachable)")
    assert len(sends) >= 3, sends  # the first try and (at least) two retries
