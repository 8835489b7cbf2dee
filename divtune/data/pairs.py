"""Labelled same/different response pairs for training a DARLING partition classifier.

A *same* pair (label 1) is one answer in two phrasings ("I'd go with the Tiger." / "<answer>tiger</answer>");
a *different* pair (label 0) is two different answers.  Both labels share one phrasing equally often
(``same_wording``), so the wording says nothing about the label: the classifier must compare the answers.  Answers come from the list-item banks
(:mod:`divtune.data.banks`); phrasings from :data:`PHRASINGS`.  Deterministic for a seed.

File format (JSONL, one pair per line): ``{"text1": str, "text2": str, "label": 0|1}`` -- what
``divtune train-partitioner --data`` reads (:func:`read_pairs` validates it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtune.data.banks import NUMBER_RANGE, TRAIN_CATEGORIES
from divtune.data.jsonl import read_objects, write_lines
from divtune.errors import DataError

# {x}: the answer as written in the bank; {lx}: lower-cased.  Most are longer than the partitioner's
# 5-unigram shortcut, so the classifier (not the shortcut) decides them at training time.
PHRASINGS: tuple[str, ...] = (
    "<answer>{x}</answer>",
    "My answer is {x}.",
    "I would pick {lx}, that is my final choice.",
    "After thinking about it, I'll go with {x}.",
    "Let me choose one at random. I choose {x}.",
    "The option I select is {lx}.",
    "Okay, here is my pick: <answer>{x}</answer>",
    "{x} -- that is the one I want to select from the list.",
    "Out of all the options, {x} stands out, so I choose it.",
    "I am going to answer {x} this time.",
    "Sure! My selection from the list is {x}.",
    "Hmm, let me see. I think I will take {lx}.",
    "Final answer: {x}",
    "If I have to pick just one, it would be {x}.",
)


@dataclass(frozen=True)
class Pair:
    text1: str
    text2: str
    label: int  # 1: same answer (equivalent), 0: different answers

    def to_dict(self) -> dict[str, Any]:
        return {"text1": self.text1, "text2": self.text2, "label": self.label}


def _answer(rng: random.Random, category: str) -> str:
    if category == "numbers":
        lo, hi = NUMBER_RANGE
        return str(rng.randint(lo, hi))
    return rng.choice(TRAIN_CATEGORIES[category])


def _phrase(template: str, answer: str) -> str:
    return template.format(x=answer, lx=answer.lower())


def synthesize_pairs(n: int, seed: int = 0, categories: Sequence[str] | None = None,
                     phrasings: Sequence[str] = PHRASINGS, same_fraction: float = 0.5,
                     same_wording: float = 0.2) -> list[Pair]:
    """``n`` seeded pairs: ``same_fraction`` of them paraphrases of one answer, the rest different answers."""
    if n < 2:
        raise DataError(f"number of pairs must be >= 2, got {n}")
    if not 0.0 <= same_wording <= 1.0:
        raise DataError(f"same_wording must be in [0, 1], got {same_wording}")
    if not 0.0 < same_fraction < 1.0:
        raise DataError(f"same_fraction must be in (0, 1), got {same_fraction}")
    cats = sorted(TRAIN_CATEGORIES) if categories is None else list(categories)
    for c in cats:
        if c not in TRAIN_CATEGORIES:
            raise DataError(f"unknown category {c!r} (known: {', '.join(sorted(TRAIN_CATEGORIES))})")
    if not cats:
        raise DataError("no categories given")
    if len(phrasings) < 2:
        raise DataError("at least two phrasings are needed")
    rng = random.Random(seed)
    out: list[Pair] = []
    for _ in range(n):
        cat = rng.choice(cats)
        a = _answer(rng, cat)
        # the wording is equally often shared in both labels, so only the answer tells them apart
        t1, t2 = (rng.choice(phrasings),) * 2 if rng.random() < same_wording else rng.sample(list(phrasings), 2)
        if rng.random() < same_fraction:
            b = a if rng.random() < 0.5 else a.lower()  # same answer, maybe cased differently
            out.append(Pair(_phrase(t1, a), _phrase(t2, b), 1))
            continue
        other = cat if rng.random() < 0.7 else rng.choice(cats)  # mostly hard negatives: same category
        b = _answer(rng, other)
        while b.casefold() == a.casefold():
            b = _answer(rng, other)
        out.append(Pair(_phrase(t1, a), _phrase(t2, b), 0))
    return out


def write_pairs(pairs: Sequence[Pair], path: str | os.PathLike) -> Path:
    """One sorted-key JSON object per line, written atomically (temp file + rename)."""
    return write_lines((pr.to_dict() for pr in pairs), path, noun="pairs file")


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Read and validate a pairs JSONL; any problem is one :class:`DataError` naming the file and line."""
    p = Path(path)
    out: list[Pair] = []
    for _, where, d in read_objects(p, noun="pairs", expected="an object with text1, text2, label"):
        missing = [k for k in ("text1", "text2", "label") if k not in d]
        if missing:
            raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
        extra = sorted(set(d) - {"text1", "text2", "label"})
        if extra:
            raise DataError(f"{where}: unknown key {extra[0]!r} (allowed: text1, text2, label)")
        for k in ("text1", "text2"):
            if not isinstance(d[k], str) or not d[k].strip():
                raise DataError(f"{where}: {k} must be a non-empty string")
        label = d["label"]
        if isinstance(label, bool) or label not in (0, 1):
            raise DataError(f"{where}: label must be 0 (different) or 1 (same), got {label!r}")
        out.append(Pair(d["text1"], d["text2"], int(label)))
    if not out:
        raise DataError(f"pairs file {p} contains no pairs")
    return out
