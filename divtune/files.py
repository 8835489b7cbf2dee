"""Reading a user's input file: bounded in size, UTF-8, and parsed with bounded structure; and the ceilings
on how much input and work one command may take (:func:`limit`, raised through ``DIVTUNE_MAX_<NAME>``).

Every lists, prompts, dataset, policy and config file goes through :func:`read_text`, and every YAML or
JSON document through :func:`load_yaml` / :func:`load_json`: a missing or oversized file, bytes that are
not UTF-8, and documents nested too deep or expanded by YAML aliases into more elements than any real
input holds are one-line errors of the caller's class, never a MemoryError or RecursionError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line

MAX_DEPTH = 64
MAX_ELEMENTS = 1_000_000

#: Default ceilings; each is overridden by ``DIVTUNE_MAX_<NAME>`` (e.g. ``DIVTUNE_MAX_SAMPLES=200000``).
DEFAULTS: dict[str, int] = {
    "SAMPLES": 100_000,  # completions per prompt (evaluate --samples)
    "TOTAL_SAMPLES": 2_000_000,  # completions per evaluation (prompts x samples)
    "EXAMPLES": 1_000_000,  # records one synthesize writes
    "LISTS": 10_000,  # lists in a --lists file
    "ITEMS": 1_000,  # items in one list
    "PROMPTS": 10_000,  # prompts in a --prompts file
    "INPUT_MB": 16,  # size of a lists/prompts/policy/config file
    "DATASET_MB": 2048,  # size of a training dataset file
    "NEW_TOKENS": 32_768,  # tokens generated per answer
}


def limit(name: str) -> int:
    """The ceiling ``name`` (a key of :data:`DEFAULTS`), from ``DIVTUNE_MAX_<NAME>`` when set to a positive integer."""
    raw = os.environ.get(f"DIVTUNE_MAX_{name}", "")
    if raw.strip().isascii() and raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULTS[name]


def read_text(path: str | os.PathLike, *, noun: str, max_mb: float, error: type[DivtuneError] = DivtuneError) -> str:
    """The UTF-8 text of a file of at most ``max_mb`` MiB; anything else is one ``error`` naming the file."""
    p = Path(path)
    try:
        if not p.exists():
            raise error(f"{noun} file not found: {p}")
        if not p.is_file():
            raise error(f"{noun} path is not a file: {p}")
        size = p.stat().st_size
        if size > max_mb * 2**20:
            raise error(f"{noun} file {p} is {size / 2**20:.1f} MiB, over the {max_mb:g} MiB limit "
                        f"(raise it with DIVTUNE_MAX_{'DATASET' if noun == 'dataset' else 'INPUT'}_MB)")
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{noun} file {p} is not UTF-8 text") from None
    except (OSError, ValueError) as exc:  # unreadable, a name too long, a NUL byte in the path
        raise error(f"cannot read {noun} file {p}: {getattr(exc, 'strerror', None) or one_line(exc, 120)}") from None


def check_structure(data: Any, *, where: str, error: type[DivtuneError] = DivtuneError) -> Any:
    """``data`` nested at most :data:`MAX_DEPTH` deep with at most :data:`MAX_ELEMENTS` elements once YAML
    aliases are expanded (what a converter or a message would walk); returns ``data``."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_ELEMENTS:
            raise error(f"{where} holds more than {MAX_ELEMENTS:,} elements (YAML aliases expanding?)")
        if depth > MAX_DEPTH:
            raise error(f"{where} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)
    return data


def load_yaml(text: str, *, where: str, error: type[DivtuneError] = DivtuneError) -> Any:
    """Safe-load a YAML document; a syntax error or an unbounded structure is one ``error``."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{where} is not valid YAML: {one_line(exc, 200)}") from None
    except RecursionError:
        raise error(f"{where} is nested more than {MAX_DEPTH} levels deep") from None
    return check_structure(data, where=where, error=error)


def load_json(text: str, *, where: str, error: type[DivtuneError] = DivtuneError) -> Any:
    """Parse a JSON document; a syntax error or an unbounded structure is one ``error``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise error(f"{where} is nested more than {MAX_DEPTH} levels deep") from None
    return check_structure(data, where=where, error=error)
