"""Answer extraction for list selection.

The model is asked to answer ``<answer>selected_item</answer>``.  Extraction rules:

* the completion must contain at least one ``<answer>...</answer>`` span (tags matched
  case-insensitively); text outside the span is ignored;
* several spans count only if they all name the same item (a hedge such as
  ``<answer>A</answer><answer>B</answer>`` is invalid);
* inside the span, leading/trailing whitespace is stripped and inner runs of whitespace
  collapse to one space; the result matches a listed item case-insensitively and maps to the
  item's canonical spelling from the list;
* anything else (no span, empty span, an item not in the list) is invalid: ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)


def normalize(text: str) -> str:
    """Whitespace-collapsed, case-folded form used to compare answers with items."""
    return " ".join(text.split()).casefold()


def extract_answer_text(completion: str) -> str | None:
    """The raw text inside the answer tags, or ``None`` when absent/ambiguous/empty."""
    spans = [" ".join(s.split()) for s in _ANSWER_RE.findall(completion)]
    if not spans:
        return None
    if len({normalize(s) for s in spans}) != 1 or not spans[0]:
        return None
    return spans[0]


def match_item(completion: str, items: Sequence[str]) -> str | None:
    """The listed item the completion selects (canonical spelling), or ``None`` if invalid."""
    answer = extract_answer_text(completion)
    if answer is None:
        return None
    key = normalize(answer)
    for item in items:
        if normalize(item) == key:
            return item
    return None


def completion_text(completion: object) -> str:
    """TRL passes plain strings, or chat messages ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    raise TypeError(f"unsupported completion type: {type(completion).__name__}")
