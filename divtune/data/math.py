"""Question/answer data for DARLING's verifiable-math and reward-model runs.

* :func:`synthesize_arithmetic` -- a small seeded arithmetic task (sums, products, two-step word
  problems, fraction sums).  Fraction answers are accepted in several forms (``3/4``, ``0.75``,
  ``\\frac{3}{4}``): :class:`divtune.rewards.quality.MathQuality` compares values, not strings.
  It exists to exercise the math path end to end on CPU; it is not a benchmark.
* :func:`read_jsonl` -- GSM8K-style JSONL: ``{"question": str, "answer": str|number}`` per line (GSM8K's
  ``"... #### 72"`` answers included; an optional ``"id"``).  With ``require_answer=False`` the answer
  may be absent: a prompts file for reward-model quality (``data.task: prompts``).

Rows for training (:meth:`MathExample.to_row`): ``group_id``, ``prompt`` (question + the answer-format
instruction), ``question`` (the raw question: what a reward model scores against) and ``answer``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from divtune.data.jsonl import read_objects, write_lines
from divtune.errors import DataError

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class MathExample:
    id: str
    question: str
    answer: str | None  # None: a prompt without a reference answer (reward-model quality)

    def prompt(self, instruction: str | None = MATH_INSTRUCTION) -> str:
        return f"{self.question}\n{instruction}" if instruction else self.question

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.answer is not None:
            d["answer"] = self.answer
        return d

    def to_row(self, instruction: str | None = MATH_INSTRUCTION) -> dict[str, Any]:
        row: dict[str, Any] = {"group_id": self.id, "prompt": self.prompt(instruction), "question": self.question}
        if self.answer is not None:
            row["answer"] = self.answer
        return row


_NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan", "Jia")
_THINGS = ("apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "cards")


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def synthesize_arithmetic(n: int, seed: int = 0) -> list[MathExample]:
    """``n`` seeded arithmetic questions with exact answers (deterministic for a seed)."""
    if n < 1:
        raise DataError(f"number of examples must be >= 1, got {n}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            q, ans = f"What is {a} + {b}?", Fraction(a + b)
        elif kind == 1:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            q, ans = f"What is {a} times {b}?", Fraction(a * b)
        elif kind == 2:
            name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
            a, bags, each, gave = rng.randint(2, 30), rng.randint(2, 9), rng.randint(2, 12), rng.randint(1, 10)
            q = (f"{name} has {a} {thing}, buys {bags} bags with {each} {thing} each, then gives away {gave}. "
                 f"How many {thing} does {name} have now?")
            ans = Fraction(a + bags * each - gave)
        else:
            d1, d2 = rng.choice((2, 4, 5, 8, 10)), rng.choice((2, 4, 5, 8, 10))
            n1, n2 = rng.randint(1, d1 - 1), rng.randint(1, d2 - 1)
            q = f"What is {n1}/{d1} + {n2}/{d2}? Give the answer as a fraction or a decimal."
            ans = Fraction(n1, d1) + Fraction(n2, d2)
        out.append(MathExample(id=f"arith-{seed}-{i:06d}", question=q, answer=_fmt(ans)))
    return out


def write_jsonl(examples: Sequence[MathExample], path: str | os.PathLike) -> Path:
    """One sorted-key JSON object per line, written atomically."""
    return write_lines((ex.to_dict() for ex in examples), path, noun="dataset")


def read_jsonl(path: str | os.PathLike, *, require_answer: bool = True) -> list[MathExample]:
    """GSM8K-style question/answer JSONL, validated; a problem is one :class:`DataError` naming file and line."""
    p = Path(path)
    out: list[MathExample] = []
    seen: set[str] = set()
    for n, where, d in read_objects(p, noun="dataset", expected="an object with question and answer"):
        q = d.get("question")
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{where}: question must be a non-empty string")
        a = d.get("answer")
        if a is None:
            if require_answer:
                raise DataError(f"{where}: missing answer (math quality needs a reference answer)")
        elif isinstance(a, bool) or not isinstance(a, (str, int, float)) or not str(a).strip():
            raise DataError(f"{where}: answer must be a non-empty string or a number")
        rid = d.get("id", f"{p.stem}-{n:06d}")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise DataError(f"{where}: id must be a string or integer")
        rid = str(rid)
        if rid in seen:
            raise DataError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        out.append(MathExample(id=rid, question=q, answer=None if a is None else str(a)))
    if not out:
        raise DataError(f"dataset file {p} contains no records")
    return out


def read_rows(path: str | os.PathLike, *, require_answer: bool = True,
              instruction: str | None = MATH_INSTRUCTION) -> list[dict[str, Any]]:
    """Training rows (``group_id``, ``prompt``, ``question``, ``answer``) from a question JSONL."""
    return [e.to_row(instruction) for e in read_jsonl(path, require_answer=require_answer)]
