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
        target = Path(json.loads(ptr.read_text())["path"])
        if not target.is_dir():
            from divtune.errors import DivtuneError

            raise DivtuneError(f"the model artifact {p} points at {target}, which this step cannot see: a pointer "
                               "must name a path on a volume every step mounts (cluster.cache_pvc)")
        return target
    return p


def write_pointer(artifact_dir: str | os.PathLike, model_dir: str | os.PathLike) -> Path:
    """Make ``artifact_dir`` (created) point at ``model_dir``; returns the pointer file."""
    out = Path(artifact_dir)
    out.mkdir(parents=True, exist_ok=True)
    ptr = out / POINTER
    tmp = ptr.with_name(f".{ptr.name}.tmp")
    tmp.write_text(json.dumps({"path": str(Path(model_dir).resolve())}, indent=2, sort_keys=True))
    os.replace(tmp, ptr)
    return ptr
