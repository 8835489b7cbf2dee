"""A run's training dataset: synthesized from the config, or a user's file (local or ``s3://``),
validated by the reader of its task and turned into trainer rows.

``data.task`` decides the format: ``lists`` (list-selection records, :mod:`divtune.data.lists`),
``math`` (question/answer JSONL, :mod:`divtune.data.math`; synthesized arithmetic when no
``data.path``), ``prompts`` (question JSONL without reference answers: needs ``data.path``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from divtune.errors import DataError


def materialize(d, out_path: str | os.PathLike, *, endpoint_url: str | None = None) -> int:
    """Write the dataset ``d`` (a :class:`~divtune.config.DataConfig`) describes to ``out_path``; return its size."""
    out = Path(out_path)
    if d.path:
        with tempfile.TemporaryDirectory(prefix="divtune-data-") as tmp:
            src = Path(tmp) / "data.jsonl"
            if str(d.path).startswith("s3://"):
                from divtune import storage

                storage.download_file(d.path, src, endpoint_url=endpoint_url)
            else:
                if not Path(d.path).is_file():
                    raise DataError(f"data.path: dataset file not found: {d.path}")
                shutil.copyfile(d.path, src)
            n = len(training_rows(d.task, src))  # validated before it becomes the run's dataset
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
        return n
    examples, write = _synthesized(d, d.num_examples)
    write(examples, out)
    return len(examples)


def _synthesized(d, num: int):
    """``(examples, writer)`` for a synthesized task, or the one-line error for a task that is not synthesized."""
    if d.task == "lists":
        from divtune.data.lists import synthesize_lists, write_jsonl

        return synthesize_lists(num, d.seed, d.categories, d.min_len, d.max_len), write_jsonl
    if d.task == "math":
        from divtune.data.math import synthesize_arithmetic
        from divtune.data.math import write_jsonl  # type: ignore[no-redef]

        return synthesize_arithmetic(num, d.seed), write_jsonl
    raise DataError(f"data.task {d.task!r} is not synthesized: set data.path to a dataset file (local or s3://)")


def check_source(d) -> None:
    """Before a run: the configured data can be synthesized, or the local ``data.path`` is valid for its task
    (an ``s3://`` path is read by the synthesize step)."""
    if d.path is None:
        _synthesized(d, 1)
    elif not str(d.path).startswith("s3://"):
        if not Path(d.path).is_file():
            raise DataError(f"data.path: dataset file not found: {d.path}")
        training_rows(d.task, d.path)


def training_rows(task: str, path: str | os.PathLike) -> list[dict[str, Any]]:
    """Trainer rows from a dataset file of ``task``'s format."""
    if task in ("math", "prompts"):
        from divtune.data.math import MATH_INSTRUCTION, read_rows

        return read_rows(path, require_answer=task == "math", instruction=MATH_INSTRUCTION if task == "math" else None)
    if task == "lists":
        from divtune.data.lists import read_jsonl

        return [e.to_row() for e in read_jsonl(path)]
    raise DataError(f"data.task {task!r} has no training-data format")
