"""Output paths a command writes: never delete what divtune did not create, never leave half a result.

A directory divtune writes carries a marker file (:data:`MARKER`).  An existing output directory is
replaced only when it holds that marker (divtune's own earlier output) or the user passed ``--force``;
an empty directory is fine.  Anything else is refused *before* the work starts.  The new content is
built in a temporary sibling and moved into place at the end, so a failed command leaves the old
output as it was.  Output files are written through a temporary sibling and renamed likewise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from divtune.errors import DivtuneError

MARKER = ".divtune-output"


def _ours(p: Path) -> bool:
    return (p / MARKER).is_file()


def check_output_dir(path: str | os.PathLike, *, force: bool = False, flag: str = "-o") -> Path:
    """The directory ``path`` may be (re)written: absent, empty, divtune's own output, or ``force``; else one line."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DivtuneError(f"{flag} {p}: exists and is not a directory")
    if p.is_dir():
        if p.resolve() in (Path.cwd().resolve(), Path.home().resolve(), Path(p.anchor)):
            raise DivtuneError(f"{flag} {p}: refusing to replace the current, home or root directory; name a new one")
        if any(p.iterdir()) and not _ours(p) and not force:
            raise DivtuneError(f"{flag} {p}: the directory exists and was not written by divtune; "
                               "name a new directory or pass --force to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise DivtuneError(f"{flag} {p}: cannot write in {parent}")
    return p


def check_output_file(path: str | os.PathLike, *, flag: str = "-o") -> Path:
    """A file path that can be written: not a directory, its directory writable where it exists."""
    p = Path(path)
    if not str(path).strip():
        raise DivtuneError(f"{flag}: empty path")
    if p.is_dir():
        raise DivtuneError(f"{flag} {p}: is a directory; name a file")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise DivtuneError(f"{flag} {p}: cannot write in {parent}")
    return p


def mark(directory: str | os.PathLike, command: str) -> None:
    """Write the marker that says divtune wrote ``directory`` (and with which command)."""
    Path(directory, MARKER).write_text(json.dumps({"command": command, "created": int(time.time())}) + "\n")


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, *, command: str, force: bool = False, flag: str = "-o") -> Iterator[Path]:
    """Build a directory in a temporary sibling (yielded), then move it to ``path``; on error leave ``path`` as is."""
    target = check_output_dir(path, force=force, flag=flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        mark(tmp, command)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_atomically(target: str | os.PathLike, build, *, command: str = "build") -> Path:
    """Run ``build(tmp_dir)`` in a temporary sibling and move the result to ``target`` (a cache entry or an output
    divtune owns); nothing half-built stays."""
    with output_dir(target, command=command, force=True) as tmp:
        build(tmp)
    return Path(target)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a file atomically (temporary sibling, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
