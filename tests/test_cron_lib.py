"""KFP cron validation read as robfig/cron reads it: ASCII only, at most once a minute, descriptors and @every."""

from __future__ import annotations

import pytest

from divtune.cron import validate_cron
from divtune.errors import DivtuneError


@pytest.mark.parametrize("expr", [
    "0 * * * * *",  # once a minute: the most frequent schedule allowed
    "0 0 3 * * *", "0 5/15 * * * *", "0 0 3 * * SUN", "0 0 3 1-1 * *", "0 0 3 * dec/3 *",
    "@hourly", "@weekly", "@every 1m", "@every 1h30m", "@every 1.5h", "@every 90s", "@every 2h0m0s",
])
def test_accepted(expr):
    assert validate_cron(expr) == expr


def test_whitespace_is_normalised():
    assert validate_cron("  0  0 3 * *\t* ") == "0 0 3 * * *"
    assert validate_cron("@every   2h") == "@every 2h"


@pytest.mark.parametrize("expr,msg", [
    ("* * * * * *", "fires more often than once a minute (60 times"),
    ("? * * * * *", "fires more often than once a minute"),
    ("0,30 * * * * *", "(2 times in each minute it matches)"),
    ("*/10 0 3 * * *", "e.g. '0 0 3 * * *'"),
    ("5-6 0 3 * * *", "fires more often than once a minute"),
    ("@every 30s", "@every needs at least 1m"),
    ("@every 59.9s", "@every needs at least 1m"),
    ("@every 0", "@every needs at least 1m"),
    ("@every 1h 30m", "unknown descriptor"),
    ("@every -1h", "unknown descriptor"),
    ("@every ５h", "unknown descriptor"),
    ("@Daily", "unknown descriptor"),
    ("0 0 3 ５ * *", "day-of-month has the non-ASCII character '５'"),
    ("0 0 ３ * * *", "hours has the non-ASCII character"),
    ("0 0 3 * * 7", "day-of-week value 7 outside 0-6"),
    ("0 0 3 L * *", "day-of-month value 'L' is not a number"),
    ("0 0 3 * * 1#2", "day-of-week value '1#2' is not a number"),
    ("0 0 3 15W * *", "is not a number"),
    ("H 0 3 * * *", "seconds value 'H' is not a number"),
    ("0 0 3 * * * 2030", "expected 6 fields"),
    ("0 0 3 * jan-feb-mar *", "is not a number"),
    ("0 0 3/ * * *", "hours step '' must be a positive integer"),
    ("0 0 3/x * * *", "hours step 'x'"),
    ("0 0 +3 * * *", "hours value '+3' is not a number"),
    ("0 0 3 * * sat-mon", "runs backwards"),
    ("0 0 1,,2 * * *", "empty list item in hours"),
])
def test_refused(expr, msg):
    with pytest.raises(DivtuneError) as exc:
        validate_cron(expr)
    assert msg in str(exc.value) and "\n" not in str(exc.value)


def test_long_expression_is_cut_in_the_message():
    with pytest.raises(DivtuneError) as exc:
        validate_cron("0 0 3 * * " + "x" * 5000)
    assert len(str(exc.value)) < 250
