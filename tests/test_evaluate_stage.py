"""The pipeline's evaluate stage runs every configured suite and hands their headline metrics to the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from divtune.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"


@pytest.mark.slow
def test_evaluate_model_runs_every_configured_suite(toy_model_dir):
    from divtune.config import load_config
    from divtune.evaluate import suites

    cfg = load_config("toy", overrides=[
        "evaluate.suites=[lists, open_set, creative, benchmarks]", "evaluate.samples_per_list=4",
        "evaluate.open_set_samples=3", "evaluate.creative_samples=3", "evaluate.creative_max_new_tokens=8",
        f"evaluate.benchmarks_data={FIXTURES}", "evaluate.benchmarks_tasks=[gsm8k]", "evaluate.benchmarks_runs=1",
        "evaluate.benchmarks_limit=1"])
    metrics, results = suites.evaluate_model(cfg, toy_model_dir)
    assert set(results) == {"lists", "open_set", "creative", "benchmarks"}
    assert {"jsd_mean", "invalid_rate", "unique_at_n", "pairwise_cosine_distance", "one_minus_self_bleu",
            "bench.gsm8k"} <= set(metrics)
    assert 1 <= metrics["unique_at_n"] <= 3
    assert results["benchmarks"]["results"]["gsm8k"]["num_docs"] == 1
    # the settings are part of what makes a champion's recorded metrics comparable
    assert suites.eval_fingerprint(cfg) != suites.eval_fingerprint(load_config("toy"))


def test_suite_settings_are_validated():
    from divtune.config import load_config

    with pytest.raises(ConfigError, match="unknown suite 'bench'"):
        load_config("toy", overrides=["evaluate.suites=[lists, bench]"])
    with pytest.raises(ConfigError, match="benchmarks_data"):
        load_config("toy", overrides=["evaluate.suites=[benchmarks]"])
    with pytest.raises(ConfigError, match="allow_code_execution"):
        load_config("toy", overrides=["evaluate.suites=[benchmarks]", "evaluate.benchmarks_data=/x",
                                      "evaluate.benchmarks_tasks=[humaneval]"])
