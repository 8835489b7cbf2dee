"""Scheduled retraining: KFP's 6-field cron validated locally; submission errors are one line."""

from __future__ import annotations

import pytest

from conftest import run_cli
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


def test_schedule_cli_rejects_bad_cron_before_the_cluster():
    res = run_cli("schedule", "--cron", "0 3 * * *", "--kfp-host", "http://127.0.0.1:9")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("divtune: error:")]
    assert len(lines) == 1 and "KFP needs 6 fields" in lines[0]


def test_unreachable_kfp_host_is_one_line():
    res = run_cli("schedule", "--cron", "0 0 3 * * *", "--kfp-host", "http://127.0.0.1:9")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-1500:]
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in res.stderr


def test_run_on_unreachable_kfp_host_is_one_line():
    res = run_cli("run", "--kfp-host", "http://127.0.0.1:9")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "cannot reach Kubeflow Pipelines" in res.stderr
