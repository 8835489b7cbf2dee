"""Pointer files: an artifact that names a model directory instead of holding gigabytes of weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

POINTER = "divtune_pointer.json"


def model_dir_of(artifact_path: str | os.PathLike) -> Path:
    """The model directory an artifact holds: itself, or the directory its pointer file names."""
    p = Path(artifact_path)
    ptr = p / POINTER
    if ptr.is_file():
        data = json.loads(ptr.read_text())
        if "uri" in data:
            return fetch_remote(data["uri"], data.get("endpoint_url"))
        target = Path(data["path"])
        if not target.is_dir():
            from divtune.errors import DivtuneError

            raise DivtuneError(f"the model artifact {p} points at {target}, which this step cannot see: a pointer "
                               "must name a path on a volume every step mounts (cluster.cache_pvc)")
        return target
    return p


def _write(artifact_dir: str | os.PathLike, data: dict) -> Path:
    from divtune.outputs import write_text

    return write_text(Path(artifact_dir) / POINTER, json.dumps(data, indent=2, sort_keys=True))


def write_pointer(artifact_dir: str | os.PathLike, model_dir: str | os.PathLike) -> Path:
    """Make ``artifact_dir`` (created) point at ``model_dir``; returns the pointer file."""
    return _write(artifact_dir, {"path": str(Path(model_dir).resolve())})


def write_remote_pointer(artifact_dir: str | os.PathLike, uri: str, endpoint_url: str | None = None) -> Path:
    """Make ``artifact_dir`` (created) name a model uploaded to object storage (``s3://``) instead of holding it:
    the KFP artifact store then carries a few bytes, not a second copy of the weights."""
    return _write(artifact_dir, {"uri": uri, "endpoint_url": endpoint_url})


def fetch_remote(uri: str, endpoint_url: str | None = None) -> Path:
    """The local copy of the model at ``uri`` (``s3://``), downloaded once into the model cache
    (``$DIVTUNE_HOME/models/remote``; checksums verified, built atomically: an incomplete download never used)."""
    import hashlib

    from divtune import outputs, paths, storage
    from divtune.errors import DivtuneError

    if not uri.startswith("s3://"):
        raise DivtuneError(f"a model pointer names {uri!r}: only s3:// URIs are supported")
    dst = paths.model_cache() / "remote" / hashlib.sha256(uri.encode()).hexdigest()[:20]
    if (dst / outputs.MARKER).is_file():
        return dst
    return outputs.build_atomically(dst, lambda tmp: storage.download_dir(uri, tmp, endpoint_url=endpoint_url),
                                    command="fetch-model")
