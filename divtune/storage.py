"""Model directories in S3-compatible object storage (AWS S3, MinIO, Ceph), through boto3.

* The endpoint comes from the config or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO etc.);
  credentials come only from the environment / boto3's default chain, never from config files.
* Uploads are all-or-nothing for readers: files first, then a ``_DIVTUNE_COMPLETE.json`` manifest (names,
  sizes, sha256); a failed upload deletes what it wrote; downloads refuse a prefix without the manifest.
* Transient errors are retried with exponential backoff (botocore "standard" mode); what is left is a
  one-line :class:`~divtune.errors.DivtuneError` (unreachable endpoint, wrong credentials, missing bucket).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from divtune.digests import file_sha256
from divtune.errors import DivtuneError, one_line

MANIFEST = "_DIVTUNE_COMPLETE.json"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise DivtuneError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise DivtuneError(f"s3 URI has no bucket: {uri}")
    return bucket, key.strip("/")


def client(endpoint_url: str | None = None, max_attempts: int = 5):
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    cfg = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint or None, config=cfg)


def _explain(exc: Exception, what: str) -> DivtuneError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    inner = exc.__cause__ or exc.__context__  # boto3's upload_file wraps the ClientError in S3UploadFailedError
    if not isinstance(exc, ClientError) and isinstance(inner, (ClientError, EndpointConnectionError)):
        exc = inner
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = {"NoSuchBucket": "bucket does not exist", "InvalidAccessKeyId": "wrong credentials (access key)",
               "SignatureDoesNotMatch": "wrong credentials (secret key)", "AccessDenied": "access denied",
               "404": "not found", "403": "access denied (check credentials)"}.get(code, code or "client error")
        return DivtuneError(f"{what}: {msg}")
    if isinstance(exc, NoCredentialsError):
        return DivtuneError(f"{what}: no credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        return DivtuneError(f"{what}: endpoint unreachable after retries ({exc.kwargs.get('endpoint_url', '')})")
    return DivtuneError(f"{what}: {one_line(exc, 200)}")


def require_bucket(uri: str, what: str, *, endpoint_url: str | None = None, s3=None) -> None:
    """The bucket of ``uri`` exists and answers (after boto3's retries), or one line starting with ``what``."""
    bucket, _ = parse_s3_uri(uri)
    try:
        (s3 or client(endpoint_url)).head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - any S3 failure is one line naming the URI and the cause
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket"):
            raise DivtuneError(f"{what}: bucket {bucket!r} does not exist") from None
        raise _explain(exc, what) from None


def upload_dir(local_dir: str | os.PathLike, uri: str, *, endpoint_url: str | None = None,
               max_attempts: int = 5) -> dict[str, Any]:
    """Upload every file under ``local_dir`` to ``uri`` (a prefix), manifest last; returns the manifest."""
    src = Path(local_dir)
    if not src.is_dir():
        raise DivtuneError(f"cannot upload {src}: not a directory")
    bucket, prefix = parse_s3_uri(uri)
    s3 = client(endpoint_url, max_attempts)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    manifest = {"files": {p.relative_to(src).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                          for p in files}}
    written: list[str] = []
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            raise DivtuneError(f"cannot upload to {uri}: bucket {bucket!r} does not exist") from None
        raise _explain(exc, f"cannot upload to {uri}") from None
    try:
        for p in files:
            key = f"{prefix}/{p.relative_to(src).as_posix()}" if prefix else p.relative_to(src).as_posix()
            # S3 checks each object against the SHA-256 the client sends (native checksums); the manifest keeps
            # the whole files' digests for the reader, which verifies them after download
            s3.upload_file(str(p), bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"})
            written.append(key)
        mkey = f"{prefix}/{MANIFEST}" if prefix else MANIFEST
        s3.put_object(Bucket=bucket, Key=mkey, Body=json.dumps(manifest, sort_keys=True).encode())
    except Exception as exc:  # noqa: BLE001 - clean up, then one line
        for key in written:
            try:
                s3.delete_object(Bucket=bucket, Key=key)
            except Exception:  # noqa: BLE001 - best effort; readers still see no manifest
                pass
        raise _explain(exc, f"cannot upload to {uri}") from None
    return manifest


def download_dir(uri: str, local_dir: str | os.PathLike, *, endpoint_url: str | None = None,
                 max_attempts: int = 5) -> Path:
    """Download a prefix written by :func:`upload_dir`; refuses incomplete uploads, verifies checksums."""
    bucket, prefix = parse_s3_uri(uri)
    s3 = client(endpoint_url, max_attempts)
    dst = Path(local_dir)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        mkey = f"{prefix}/{MANIFEST}" if prefix else MANIFEST
        try:
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=mkey)["Body"].read())
        except Exception as exc:  # noqa: BLE001
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise DivtuneError(f"{uri} holds no complete divtune upload (no {MANIFEST})") from None
            raise
        for name, meta in manifest["files"].items():
            out = dst / name
            out.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, f"{prefix}/{name}" if prefix else name, str(out))
            if file_sha256(out) != meta["sha256"]:
                raise DivtuneError(f"{uri}/{name}: checksum mismatch after download")
    except DivtuneError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, f"cannot download {uri}") from None
    return dst


def download_file(uri: str, local_path: str | os.PathLike, *, endpoint_url: str | None = None) -> Path:
    """One object (``s3://bucket/key``) to a local file, written atomically; errors are one line."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_uri(uri)
    if not key:
        raise DivtuneError(f"s3 URI names no object: {uri}")
    dst = Path(local_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        client(endpoint_url).download_file(bucket, key, str(tmp))
    except (ClientError, BotoCoreError) as exc:
        tmp.unlink(missing_ok=True)
        raise _explain(exc, f"cannot download {uri}") from None
    os.replace(tmp, dst)
    return dst
