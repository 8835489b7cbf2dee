"""Validate the 6-field cron expressions Kubeflow Pipelines recurring runs use.

KFP schedules with robfig/cron's *seconds-first* format: ``SEC MIN HOUR DOM MONTH DOW``
(e.g. ``0 0 3 * * *`` = every day at 03:00:00).  A 5-field crontab line is the most common
mistake, so it gets its own message.  Checked locally before anything talks to a cluster.
"""

from __future__ import annotations

import re

from divtune.errors import DivtuneError

_FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23), ("day-of-month", 1, 31),
           ("month", 1, 12), ("day-of-week", 0, 6))
_NAMES = {
    "month": {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "day-of-week": {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_EVERY = re.compile(r"^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def _value(tok: str, name: str, lo: int, hi: int, expr: str) -> int:
    names = _NAMES.get(name, {})
    if tok.lower() in names:
        return names[tok.lower()]
    if not tok.isdigit():
        raise DivtuneError(f"malformed cron {expr!r}: {name} value {tok!r} is not a number")
    v = int(tok)
    if not lo <= v <= hi:
        raise DivtuneError(f"malformed cron {expr!r}: {name} value {v} outside {lo}-{hi}")
    return v


def validate_cron(expr: str) -> str:
    """Return the normalised expression, or raise a one-line :class:`DivtuneError`."""
    e = " ".join(str(expr).split())
    if not e:
        raise DivtuneError("malformed cron '': empty expression")
    if e.startswith("@"):
        if e in _DESCRIPTORS or _EVERY.match(e):
            return e
        raise DivtuneError(f"malformed cron {expr!r}: unknown descriptor")
    parts = e.split(" ")
    if len(parts) == 5:
        raise DivtuneError(f"malformed cron {expr!r}: KFP needs 6 fields (seconds first), e.g. '0 {e}'")
    if len(parts) != 6:
        raise DivtuneError(f"malformed cron {expr!r}: expected 6 fields 'SEC MIN HOUR DOM MONTH DOW', got {len(parts)}")
    for part, (name, lo, hi) in zip(parts, _FIELDS):
        for item in part.split(","):
            if not item:
                raise DivtuneError(f"malformed cron {expr!r}: empty list item in {name}")
            rng, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                raise DivtuneError(f"malformed cron {expr!r}: {name} step {step!r} must be a positive integer")
            if rng in ("*", "?"):
                continue
            a, dash, b = rng.partition("-")
            va = _value(a, name, lo, hi, expr)
            if dash:
                vb = _value(b, name, lo, hi, expr)
                if vb < va:
                    raise DivtuneError(f"malformed cron {expr!r}: {name} range {rng} runs backwards")
    return e
