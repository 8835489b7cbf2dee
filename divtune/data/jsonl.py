"""JSON-lines files: atomic writes and line-numbered reads with one-line errors.

Every dataset module (lists, pairs, math) writes through :func:`write_lines` and reads through
:func:`read_lines`, so a half-written file never replaces a good one and every read error names
the file (and the caller names the line).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from divtune.errors import DataError


def write_lines(records: Iterable[Mapping[str, Any]], path: str | os.PathLike, *, noun: str = "dataset") -> Path:
    """One sorted-key JSON object per line, written atomically (temp file + rename); empty is an error."""
    p = Path(path)
    lines = [json.dumps(dict(r), sort_keys=True, ensure_ascii=False) for r in records]
    if not lines:
        raise DataError(f"refusing to write an empty {noun} to {p}")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_text(path: str | os.PathLike, *, noun: str = "dataset") -> str:
    """A UTF-8 file's text within its size limit (datasets: DIVTUNE_MAX_DATASET_MB, other inputs:
    DIVTUNE_MAX_INPUT_MB); missing, oversized, not a file or not UTF-8 is a one-line DataError naming it."""
    from divtune import files

    cap = files.limit("DATASET_MB" if noun == "dataset" else "INPUT_MB")
    return files.read_text(path, noun=noun, max_mb=cap, error=DataError)


def read_lines(path: str | os.PathLike, *, noun: str = "dataset") -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 file with their 1-based numbers; a missing/unreadable file is a DataError."""
    text = read_text(path, noun=noun)
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_objects(path: str | os.PathLike, *, noun: str = "dataset",
                 expected: str = "an object") -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(line number, "NOUN file PATH line N", object)`` for every line, which must be a JSON object."""
    p = Path(path)
    for n, line in read_lines(p, noun=noun):
        where = f"{noun} file {p} line {n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{where}: not valid JSON") from None
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected {expected}")
        yield n, where, d
