"""Content digests (SHA-256) of files and model directories: cache keys, checksums, lineage params."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: What :func:`dir_digest` reads of a model directory (weights, configs, tokenizer, templates).
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja", ".model")


def file_sha256(path: str | os.PathLike) -> str:
    """The full hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """A short (16 hex) SHA-256 of a file: for names and params."""
    return file_sha256(path)[:16]


def dir_digest(path: str | os.PathLike, suffixes: tuple[str, ...] = MODEL_FILE_SUFFIXES) -> str:
    """A short SHA-256 over the relative names and contents of a directory's files with these suffixes."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in suffixes:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(file_digest(p).encode())
    return h.hexdigest()[:16]
