"""Command-line flag types: every flag's range where the flag is added.

Config fields declare their bounds next to their help text (:mod:`divtune.config.schema`); flags declare
theirs with the same vocabulary (``min``, ``gt``, ``max``, ``max_exclusive``) and the same check
(:func:`divtune.config.validate.check_number`), through the argparse types below.  Ceilings on how much
work a flag may ask for come from :func:`divtune.files.limit` (raised through ``DIVTUNE_MAX_<NAME>``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse


def _bounded(kind: type, what: str, **meta: Any) -> Callable[[str], Any]:
    from divtune.config.validate import check_number
    from divtune.errors import ConfigError, short

    def parse(text: str) -> Any:
        s = text.strip()
        try:
            if kind is int:
                if not (s.lstrip("+-").isascii() and s.lstrip("+-").isdigit()):
                    raise ValueError
                value: Any = int(s)
            else:
                if not s.isascii():
                    raise ValueError
                value = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{short(text, 40)} is not {what}") from None
        bounds = {k: (v() if callable(v) else v) for k, v in meta.items()}
        try:
            check_number(value, bounds, "", integer=kind is int)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return parse


def count(*, min: int = 1, max: int | Callable[[], int] | None = None) -> Callable[[str], int]:
    """An integer flag within ``[min, max]`` (``max`` may be a ceiling read at parse time, e.g. ``lambda: limit(...)``)."""
    return _bounded(int, "an integer", min=min, max=max)


def number(*, min: float | None = None, gt: float | None = None, max: float | None = None,
           max_exclusive: bool = False) -> Callable[[str], float]:
    """A finite real flag within the given bounds (NaN and infinities are refused)."""
    return _bounded(float, "a number", min=min, gt=gt, max=max, max_exclusive=max_exclusive)


def text(what: str = "a value") -> Callable[[str], str]:
    """A string flag that must not be empty or blank (an unset shell variable is not "absent")."""
    def parse(s: str) -> str:
        if not s.strip():
            raise argparse.ArgumentTypeError(f"empty; give {what}")
        if "\x00" in s:
            raise argparse.ArgumentTypeError("contains a NUL character")
        return s

    parse.__name__ = "text"
    return parse


def url(what: str = "an http(s) URL") -> Callable[[str], str]:
    """An ``http://`` or ``https://`` URL with a host (``--endpoint``, ``--kfp-host``)."""
    def parse(s: str) -> str:
        u = urlparse(s.strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            raise argparse.ArgumentTypeError(f"{s!r:.60} is not {what} (e.g. http://127.0.0.1:8000)")
        try:
            u.port  # noqa: B018 - a malformed port raises
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r:.60} has an invalid port") from None
        return s.strip()

    parse.__name__ = "url"
    return parse
