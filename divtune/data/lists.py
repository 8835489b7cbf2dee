"""The list-selection dataset: seeded synthesis, a validated schema, JSONL I/O.

A record is one list-selection prompt: ``id`` (also the GRPO group id), ``category``,
``template_id``, ``items`` and the rendered ``prompt``.  Files are written atomically with sorted
keys, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtune.data.banks import HELDOUT_LISTS, NUMBER_RANGE, TRAIN_CATEGORIES
from divtune.data.jsonl import read_lines, write_lines
from divtune.data.templates import TEMPLATES, render_prompt
from divtune.errors import DataError, short

_FIELDS = {"id": str, "category": str, "template_id": int, "items": list, "prompt": str}


#: An item holding an answer tag can never be matched: the extractor reads up to the first ``</answer>``.
ANSWER_TAG_RE = re.compile(r"</?answer>", re.IGNORECASE)


def validate_items(items: Any, *, where: str) -> tuple[str, ...]:
    """A list of at least two distinct non-empty strings (case-insensitive), or a DataError."""
    if not isinstance(items, (list, tuple)):
        raise DataError(f"{where}: items must be a list of strings, got {type(items).__name__}")
    if not items:
        raise DataError(f"{where}: the list of items is empty")
    if len(items) < 2:
        raise DataError(f"{where}: a list needs at least 2 items, got {len(items)}")
    from divtune.files import limit

    if len(items) > limit("ITEMS"):
        raise DataError(f"{where}: {len(items)} items, over the limit of {limit('ITEMS')} (DIVTUNE_MAX_ITEMS)")
    seen: dict[str, str] = {}
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(f"{where}: item {i} is not a string ({short(item, 40)})")
        clean = " ".join(item.split())
        if not clean:
            raise DataError(f"{where}: item {i} is empty")
        key = clean.casefold()
        if key in seen:
            raise DataError(f"{where}: duplicate item {short(clean, 60)}")
        if ANSWER_TAG_RE.search(clean):
            raise DataError(f"{where}: item {short(clean, 60)} contains an answer tag; it could never be matched")
        seen[key] = clean
        out.append(clean)
    return tuple(out)


@dataclass(frozen=True)
class ListExample:
    id: str
    category: str
    template_id: int
    items: tuple[str, ...]
    prompt: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "template_id": self.template_id,
                "items": list(self.items), "prompt": self.prompt}

    def to_row(self) -> dict[str, Any]:
        """A training row: the GRPO group id is the example id."""
        return {"group_id": self.id, "items": list(self.items), "prompt": self.prompt}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "record") -> ListExample:
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(d).__name__}")
        for key, tp in _FIELDS.items():
            if key not in d:
                raise DataError(f"{where}: missing field {key!r}")
            if not isinstance(d[key], tp) or (tp is int and isinstance(d[key], bool)):
                raise DataError(f"{where}: field {key!r} must be {tp.__name__}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise DataError(f"{where}: unknown field {unknown[0]!r}")
        if not d["id"]:
            raise DataError(f"{where}: field 'id' is empty")
        if d["template_id"] < 0:
            raise DataError(f"{where}: field 'template_id' must be >= 0")
        if not d["prompt"].strip():
            raise DataError(f"{where}: field 'prompt' is empty")
        items = validate_items(d["items"], where=f"{where} ({d['id']})")
        return cls(id=d["id"], category=d["category"], template_id=d["template_id"], items=items, prompt=d["prompt"])


def _bank(category: str) -> tuple[str, ...]:
    if category not in TRAIN_CATEGORIES:
        known = ", ".join(sorted(TRAIN_CATEGORIES))
        raise DataError(f"unknown category {category!r} (known: {known})")
    return TRAIN_CATEGORIES[category]


def synthesize_lists(n: int, seed: int, categories: Sequence[str] | None = None, min_len: int = 4,
                     max_len: int = 12, templates: Sequence[str] | None = None) -> list[ListExample]:
    """``n`` seeded list-selection prompts from the training banks (deterministic for a seed)."""
    if n < 1:
        raise DataError(f"number of examples must be >= 1, got {n}")
    if min_len < 2:
        raise DataError(f"min_len must be >= 2, got {min_len}")
    if min_len > max_len:
        raise DataError(f"min_len ({min_len}) is larger than max_len ({max_len})")
    cats = list(categories) if categories is not None else sorted(TRAIN_CATEGORIES)
    if not cats:
        raise DataError("no categories given")
    for c in cats:
        bank = _bank(c)
        if c != "numbers" and not bank:
            raise DataError(f"category {c!r} has no items")
        if c != "numbers" and len(bank) < max_len:
            raise DataError(f"category {c!r} has {len(bank)} items, fewer than max_len={max_len}")
    tpls = tuple(templates) if templates is not None else TEMPLATES
    if not tpls:
        raise DataError("no templates given")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cat = cats[rng.randrange(len(cats))]
        length = rng.randint(min_len, max_len)
        if cat == "numbers":
            lo, hi = NUMBER_RANGE
            items = tuple(str(x) for x in rng.sample(range(lo, hi + 1), length))
        else:
            items = tuple(rng.sample(TRAIN_CATEGORIES[cat], length))
        tid = rng.randrange(len(tpls))
        out.append(ListExample(id=f"{cat}-{seed}-{i:06d}", category=cat, template_id=tid, items=items,
                               prompt=render_prompt(tpls[tid], items)))
    return out


def heldout_examples(template_id: int = 0) -> list[ListExample]:
    """The 10 held-out lists of 8 items (section 6.1), rendered with one fixed template."""
    return examples_from_lists({c: list(v) for c, v in HELDOUT_LISTS.items()}, template_id=template_id, prefix="heldout")


def examples_from_lists(lists: dict[str, list[str]], *, template_id: int = 0, prefix: str = "user") -> list[ListExample]:
    if not 0 <= template_id < len(TEMPLATES):
        raise DataError(f"template_id must be in [0, {len(TEMPLATES) - 1}], got {template_id}")
    out = []
    for name, items in lists.items():
        clean = validate_items(items, where=f"list {name}")
        out.append(ListExample(id=f"{prefix}-{name}", category=name, template_id=template_id, items=clean,
                               prompt=render_prompt(TEMPLATES[template_id], clean)))
    return out


def load_user_lists(path: str | os.PathLike, template_id: int = 0) -> list[ListExample]:
    """A JSON file holding a non-empty list of lists of strings."""
    from divtune import files
    from divtune.data.jsonl import read_text

    p = Path(path)
    data = files.load_json(read_text(p, noun="lists"), where=f"lists file {p}", error=DataError)
    if not isinstance(data, list) or not data:
        raise DataError(f"lists file {p} must hold a non-empty JSON list of lists of strings")
    if len(data) > files.limit("LISTS"):
        raise DataError(f"lists file {p} holds {len(data)} lists, over the limit of {files.limit('LISTS')} "
                        "(DIVTUNE_MAX_LISTS)")
    return examples_from_lists({f"{i:03d}": lst for i, lst in enumerate(data)}, template_id=template_id)


def write_jsonl(examples: Sequence[ListExample], path: str | os.PathLike) -> Path:
    """Validate and write atomically (temp file + rename): one sorted-key JSON object per line."""
    for i, ex in enumerate(examples):
        ListExample.from_dict(ex.to_dict(), where=f"record {i}")
    return write_lines((ex.to_dict() for ex in examples), path)


def read_jsonl(path: str | os.PathLike) -> list[ListExample]:
    p = Path(path)
    out = []
    for n, line in read_lines(p):
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"dataset file {p}: line {n} is not valid JSON") from None
        out.append(ListExample.from_dict(d, where=f"{p.name} line {n}"))
    if not out:
        raise DataError(f"dataset file {p} contains no records")
    return out
