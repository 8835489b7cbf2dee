"""Open-set prompts (GAPO section 6.2) and the answer normalisation behind Unique@N.

The paper asks for "a single item belonging to a specific category, e.g. 'Name one city anywhere
in the world', without providing a list of options", 10 categories x 500 samples, and counts the
unique items.  It names four of its categories in the text (city; food and celebrity in the
introduction; "Name a book title" in Appendix B) but not the other six, so those are taken from
the topics of its list experiments (Figure 8: movies, flowers, colors, languages, sports; section
6.1: musical instruments).  The first phrasing of each category is the evaluation prompt (the
city one is the paper's own wording); the others are there for training-data synthesis and for
prompt-sensitivity checks.

An evaluation prompt is the phrasing plus :data:`ANSWER_FORMAT`, the same ``<answer>`` format the
list-selection training data uses, so a GAPO-trained model answers in the format it learned and
the answer can be read off exactly.  Models that ignore the format are still scored: see
:func:`normalize_answer`.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from divtune.errors import DataError

ANSWER_FORMAT = "Format your response as follows: <answer>your_answer</answer>."

PHRASINGS: dict[str, tuple[str, ...]] = {
    "city": ("Name one city anywhere in the world.", "Name a city.", "Tell me the name of one city."),
    "food": ("Suggest a food.", "Name one food.", "Name a dish people eat."),
    "celebrity": ("Name a celebrity.", "Name one famous person.", "Tell me the name of a celebrity."),
    "book": ("Name a book title.", "Name one book.", "Tell me the title of a book."),
    "movie": ("Name a movie title.", "Name one film.", "Tell me the title of a movie."),
    "flower": ("Name a flower.", "Name one kind of flower.", "Tell me the name of a flower."),
    "color": ("Name a color.", "Name one colour.", "Tell me the name of a color."),
    "language": ("Name a language.", "Name one spoken language.", "Tell me the name of a language."),
    "sport": ("Name a sport.", "Name one sport.", "Tell me the name of a sport."),
    "musical_instrument": ("Name a musical instrument.", "Name one musical instrument.",
                           "Tell me the name of a musical instrument."),
}
CATEGORIES: tuple[str, ...] = tuple(PHRASINGS)


@dataclass(frozen=True)
class OpenSetPrompt:
    category: str
    prompt: str

    def to_dict(self) -> dict[str, str]:
        return {"category": self.category, "prompt": self.prompt}


def default_prompts(phrasing: int = 0, answer_format: bool = True) -> list[OpenSetPrompt]:
    """One prompt per category: phrasing ``phrasing`` (0 = the evaluation wording), plus the format."""
    out = []
    for cat, texts in PHRASINGS.items():
        if not 0 <= phrasing < len(texts):
            raise DataError(f"phrasing must be in [0, {len(texts) - 1}], got {phrasing}")
        out.append(OpenSetPrompt(cat, f"{texts[phrasing]} {ANSWER_FORMAT}" if answer_format else texts[phrasing]))
    return out


def load_prompts_file(path: str | os.PathLike) -> list[OpenSetPrompt]:
    """A JSON file: a non-empty list of prompt strings, or of ``{"category", "prompt"}`` objects.

    Strings are used as given (no format is appended) and named ``prompt-00``, ``prompt-01``, ...
    Categories must be unique.  Any problem is a one-line :class:`DataError` naming the file.
    """
    from divtune.data.jsonl import read_text

    from divtune import files

    p = Path(path)
    data = files.load_json(read_text(p, noun="prompts"), where=f"prompts file {p}", error=DataError)
    if isinstance(data, list) and len(data) > files.limit("PROMPTS"):
        raise DataError(f"prompts file {p} holds {len(data)} prompts, over the limit of {files.limit('PROMPTS')} "
                        "(DIVTUNE_MAX_PROMPTS)")
    return prompts_from_json(data, where=f"prompts file {p}")


def prompts_from_json(data: Any, *, where: str = "prompts") -> list[OpenSetPrompt]:
    if not isinstance(data, list) or not data:
        raise DataError(f"{where} must hold a non-empty JSON list of strings or of "
                        '{"category": ..., "prompt": ...} objects')
    out: list[OpenSetPrompt] = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            cat, prompt = f"prompt-{i:02d}", item
        elif isinstance(item, dict):
            unknown = sorted(set(item) - {"category", "prompt"})
            if unknown:
                raise DataError(f"{where}: entry {i} has unknown field {unknown[0]!r}")
            if not isinstance(item.get("prompt"), str):
                raise DataError(f"{where}: entry {i} needs a string field 'prompt'")
            cat = item.get("category", f"prompt-{i:02d}")
            if not isinstance(cat, str) or not cat.strip():
                raise DataError(f"{where}: entry {i} has an empty or non-string 'category'")
            prompt = item["prompt"]
        else:
            raise DataError(f"{where}: entry {i} must be a string or an object, got {type(item).__name__}")
        if not prompt.strip():
            raise DataError(f"{where}: entry {i} has an empty prompt")
        out.append(OpenSetPrompt(cat.strip(), prompt))
    seen: set[str] = set()
    for i, pr in enumerate(out):
        if pr.category in seen:
            raise DataError(f"{where}: entry {i} repeats category {pr.category!r}")
        seen.add(pr.category)
    return out


_ANSWER_SPAN = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?answer>", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:final\s+)?answer\s*[:\-]\s*", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def answer_text(completion: str) -> str:
    """The part of a completion that is the answer (before normalisation).

    * NFKC first (full-width letters, ligatures, non-breaking spaces become plain);
    * if an ``<answer>`` tag is present: the text of the first span (up to ``</answer>``, or to
      the end when the closing tag was cut off by the token limit);
    * otherwise the *answer line*: the first non-empty line, with a leading ``Answer:`` label
      removed.  A chatty reply ("Sure! Paris is ...") keeps its whole first line, so it counts
      as its own answer: free-form replies inflate Unique@N, which is why the prompts ask for
      the tag.
    """
    text = unicodedata.normalize("NFKC", completion)
    m = _ANSWER_SPAN.search(text)
    if m:
        text = m.group(1)
    text = _TAG.sub(" ", text)
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return _LABEL.sub("", line)


def normalize_answer(completion: str) -> str:
    """Canonical form of an open-set answer; ``""`` means invalid (nothing left).

    :func:`answer_text`, then: case-folded; punctuation and symbols (Unicode categories P* and
    S*, e.g. ``.,!?"'*()-`` and markdown ``**``) removed (apostrophes dropped, the rest become
    spaces); the articles "a", "an", "the" removed as whole words (SQuAD-style); whitespace
    collapsed.  ``"<answer>The Great Gatsby.</answer>"`` and ``"great  gatsby"`` both give
    ``"great gatsby"``; ``"**São Paulo**"`` gives ``"são paulo"``.
    """
    text = answer_text(completion).casefold()
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "'\u2019\u02bc":
            continue
        chars.append(" " if cat[0] in "PS" else ch)
    text = _ARTICLES.sub(" ", "".join(chars))
    return " ".join(text.split())
