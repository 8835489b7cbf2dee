"""Validate the cron expressions Kubeflow Pipelines recurring runs use, before anything talks to a cluster.

KFP schedules with robfig/cron's *seconds-first* format: ``SEC MIN HOUR DOM MONTH DOW``
(e.g. ``0 0 3 * * *`` = every day at 03:00:00), or a descriptor (``@daily``, ``@every 1h30m``).
This module reads that grammar exactly as robfig/cron does (``*``/``?``, ``a-b`` ranges that must not run
backwards, ``/step``, comma lists, month and weekday names, ASCII digits only) and refuses what robfig refuses.
A 5-field crontab line is the most common mistake, so it gets its own message.  A schedule that fires more
often than once a minute (``* * * * * *``: every second; ``@every 30s``) is refused too: a retraining pipeline
must not be started again every few seconds.

Why not ``croniter``: it reads the seconds-first form (``second_at_beginning=True``) but not with robfig's
meaning -- it accepts backwards ranges (``5-2`` wraps around), reads an equal range such as ``5-5`` as the
whole cycle (every second), and accepts ``L``, ``W``, ``#``, ``H`` and a 7th (year) field, all of which KFP's
robfig parser rejects or reads differently.
"""

from __future__ import annotations

import re

from divtune.errors import DivtuneError, short

_FIELDS = (("seconds", 0, 59), ("minutes", 0, 59), ("hours", 0, 23), ("day-of-month", 1, 31),
           ("month", 1, 12), ("day-of-week", 0, 6))
_NAMES = {
    "month": {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    "day-of-week": {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# Go's time.ParseDuration, unsigned: one or more <number><unit>, or a bare 0
_EVERY = re.compile(r"@every ((?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+|0)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9.]+)([a-zµμ]+)")
_MIN_INTERVAL_S = 60


def _bad(expr: object, why: str) -> DivtuneError:
    return DivtuneError(f"malformed cron {short(str(expr))}: {why}")


def _value(tok: str, name: str, lo: int, hi: int, expr: str) -> int:
    names = _NAMES.get(name, {})
    if tok.lower() in names:
        return names[tok.lower()]
    if not (tok.isascii() and tok.isdigit()):
        raise _bad(expr, f"{name} value {short(tok, 30)} is not a number")
    v = int(tok)
    if not lo <= v <= hi:
        raise _bad(expr, f"{name} value {v} outside {lo}-{hi}")
    return v


def _expand(item: str, name: str, lo: int, hi: int, expr: str) -> set[int]:
    """The values one comma-separated item of a field stands for (robfig/cron's ``getRange``)."""
    rng, slash, step = item.partition("/")
    if slash and not (step.isascii() and step.isdigit() and int(step) >= 1):
        raise _bad(expr, f"{name} step {short(step, 30)} must be a positive integer")
    every = int(step) if slash else 1
    if rng in ("*", "?"):
        start, end = lo, hi
    else:
        a, dash, b = rng.partition("-")
        start = _value(a, name, lo, hi, expr)
        end = _value(b, name, lo, hi, expr) if dash else (hi if slash else start)  # "N/step" means N-max/step
        if end < start:
            raise _bad(expr, f"{name} range {rng} runs backwards")
    return set(range(start, end + 1, every))


def _every_seconds(spec: str) -> float:
    return sum(float(num) * _UNIT_S[unit] for num, unit in _PART.findall(spec))


def validate_cron(expr: str) -> str:
    """Return the normalised expression, or raise a one-line :class:`DivtuneError`."""
    e = " ".join(str(expr).split())
    if not e:
        raise DivtuneError("malformed cron '': empty expression")
    if e.startswith("@"):
        if e in _DESCRIPTORS:
            return e
        m = _EVERY.fullmatch(e)
        if m is None:
            raise _bad(expr, "unknown descriptor (known: @yearly, @annually, @monthly, @weekly, @daily, "
                             "@midnight, @hourly, @every <duration> such as @every 1h30m)")
        if _every_seconds(m.group(1)) < _MIN_INTERVAL_S:
            raise DivtuneError(f"cron {short(str(expr))} fires more often than once a minute: "
                               f"@every needs at least 1m")
        return e
    parts = e.split(" ")
    if len(parts) == 5:
        raise _bad(expr, f"KFP needs 6 fields (seconds first), e.g. {short('0 ' + e)}")
    if len(parts) != 6:
        raise _bad(expr, f"expected 6 fields 'SEC MIN HOUR DOM MONTH DOW', got {len(parts)}")
    seconds: set[int] = set()
    for i, (part, (name, lo, hi)) in enumerate(zip(parts, _FIELDS)):
        odd = next((c for c in part if not c.isascii()), None)
        if odd is not None:
            raise _bad(expr, f"{name} has the non-ASCII character {odd!r} (digits must be 0-9)")
        for item in part.split(","):
            if not item:
                raise _bad(expr, f"empty list item in {name}")
            values = _expand(item, name, lo, hi, expr)
            if i == 0:
                seconds |= values
    if len(seconds) > 1:
        raise DivtuneError(f"cron {short(str(expr))} fires more often than once a minute ({len(seconds)} times in "
                           f"each minute it matches): give one second, e.g. {short(' '.join(['0', *parts[1:]]))}")
    return e
