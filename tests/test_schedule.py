"""Scheduled retraining: KFP's 6-field cron validated locally (the CLI rows, a bad cron and an unreachable KFP
host: tests/test_bad_input_table.py)."""

from __future__ import annotations

import pytest

from divtune.cron import validate_cron
from divtune.errors import DivtuneError


@pytest.mark.parametrize("expr", ["0 0 3 * * *", "0 */15 * * * *", "0 0 2 * * mon-fri", "30 0 0 1,15 * ?",
                                  "0 0 4 * jan-jun sun", "@daily", "@every 6h", "0 0 0-23/6 * * *"])
def test_valid_cron(expr):
    assert validate_cron(expr) == expr


@pytest.mark.parametrize("expr,msg", [
    ("0 3 * * *", "KFP needs 6 fields"),
    ("0 0 3 * * * *", "expected 6 fields"),
    ("0 60 3 * * *", "minutes value 60 outside 0-59"),
    ("0 0 24 * * *", "hours value 24"),
    ("0 0 3 0 * *", "day-of-month value 0"),
    ("0 0 3 * 13 *", "month value 13"),
    ("0 0 3 * * funday", "day-of-week value 'funday'"),
    ("0 0 5-2 * * *", "runs backwards"),
    ("0 */0 * * * *", "step '0'"),
    ("@sometimes", "unknown descriptor"),
    ("", "empty"),
])
def test_malformed_cron(expr, msg):
    with pytest.raises(DivtuneError, match=msg):
        validate_cron(expr)
