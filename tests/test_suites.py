"""The evaluation suites and their one metric registry: a config without the lists suite runs through the
evaluate stage, the component's return and the run summary (it used to fail on a missing ``jsd_mean``)."""

from __future__ import annotations

import json
import uuid

import pytest

from divtune.config import load_config
from divtune.errors import ConfigError
from divtune.evaluate import suites
from divtune.promotion import gate
from divtune.promotion.promote import format_summary


def test_the_gate_reads_the_suites_registry():
    for name in suites.known_metrics():
        assert gate.policy_from_dict({"checks": [{"metric": name, "rule": "at_most", "value": 1}]}).checks
    assert gate.policy_from_dict({"checks": [{"metric": "bench.gsm8k", "rule": "no_regression"}]}).checks
    with pytest.raises(ConfigError, match="unknown metric 'jsd'.*jsd_mean.*unique_at_n"):
        gate.policy_from_dict({"checks": [{"metric": "jsd", "rule": "at_most", "value": 1}]})
    assert set(suites.METRICS) < set(suites.SUITES)


def test_headline_leaves_out_what_a_suite_did_not_measure():
    results = {"open_set": {"unique_at_n": 7, "invalid_rate": 0.5},
               "creative": {"pairwise_cosine_distance": None, "one_minus_self_bleu": 0.25},
               "benchmarks": {"metrics": {"bench.gsm8k": 0.5, "bench.math": None}}}
    assert suites.headline(results) == {"unique_at_n": 7.0, "one_minus_self_bleu": 0.25, "bench.gsm8k": 0.5}


def _summary(candidate, base):
    return {"run_key": "k", "registered_model": "m", "version": "1", "aliases": ["challenger"],
            "champion_version": None, "tracking_uri": "sqlite:///x.db", "ui_command": "mlflow ui",
            "decision": {"promote": False, "reference": "base",
                         "checks": [{"passed": False, "reason": "jsd_mean missing"}]},
            "candidate": candidate, "base": base}


def test_the_summary_shows_the_metrics_the_suites_produced():
    text = format_summary(_summary({"unique_at_n": 9.0, "bench.gsm8k": 0.4}, {"unique_at_n": 3.0}))
    assert "unique_at_n" in text and "9.000" in text and "3.000" in text and "bench.gsm8k" in text
    assert "  jsd_mean  " not in text and "[FAIL] jsd_mean missing" in text
    lists = format_summary(_summary({"jsd_mean": 0.1, "invalid_rate": 0.0}, {"jsd_mean": 0.4, "invalid_rate": 0.0}))
    assert "jsd_mean" in lists and "0.100" in lists and "0.400" in lists


def test_evaluate_stage_without_the_lists_suite(toy_model_dir, tmp_path):
    """``evaluate.suites: [open_set]`` validates, and the stage and the component's return work without jsd_mean."""
    from divtune import stages

    cfg = load_config("toy", overrides=["evaluate.suites=[open_set]", "evaluate.open_set_samples=4",
                                        "evaluate.max_new_tokens=8"])
    key = f"suites-{uuid.uuid4().hex[:8]}"
    stages.open_run(cfg.to_yaml(), key)
    out = tmp_path / "eval.json"
    info = stages.evaluate(cfg.to_yaml(), key, str(toy_model_dir), "base", str(out))
    assert "jsd_mean" not in info and "unique_at_n" in info
    assert json.loads(json.dumps(info, sort_keys=True))["role"] == "base"  # what the component returns
    written = json.loads(out.read_text())
    assert set(written["metrics"]) == {"unique_at_n"} and "open_set" in written and "lists" not in written
