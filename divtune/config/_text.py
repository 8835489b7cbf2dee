"""How config errors show the values they echo: one short line."""

from __future__ import annotations

from typing import Any

SHORT = 80


def _short(value: Any, limit: int = SHORT, *, use_repr: bool = True) -> str:
    """``repr(value)`` (or ``str`` with ``use_repr=False``) on one line of at most ``limit`` characters."""
    text = repr(value) if use_repr else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())
