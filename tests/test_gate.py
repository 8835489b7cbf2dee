"""The promotion gate is a pure function of policy, candidate and reference metrics."""

from __future__ import annotations

import pytest

from divtune.errors import ConfigError
from divtune.promotion.gate import decide, decision_from_tags, default_policy, load_policy, policy_from_dict

POLICY = default_policy(max_invalid_rate=0.05, min_jsd_improvement=0.0)


def test_promotes_only_when_every_check_passes():
    d = decide(POLICY, {"jsd_mean": 0.2, "invalid_rate": 0.01}, {"jsd_mean": 0.4, "invalid_rate": 0.0}, "base")
    assert d.promote and all(c.passed for c in d.checks)
    d = decide(POLICY, {"jsd_mean": 0.2, "invalid_rate": 0.2}, {"jsd_mean": 0.4}, "base")
    assert not d.promote and [c.passed for c in d.checks] == [True, False]
    d = decide(POLICY, {"jsd_mean": 0.5, "invalid_rate": 0.0}, {"jsd_mean": 0.4}, "champion v1")
    assert not d.promote and "vs reference 0.4000" in d.checks[0].reason


def test_equal_is_not_better():
    d = decide(POLICY, {"jsd_mean": 0.4, "invalid_rate": 0.0}, {"jsd_mean": 0.4}, "base")
    assert not d.promote


def test_missing_metric_is_a_failed_check():
    d = decide(POLICY, {"invalid_rate": 0.0}, {"jsd_mean": 0.4}, "base")
    assert not d.promote and "missing for the candidate" in d.checks[0].reason
    d = decide(POLICY, {"jsd_mean": 0.1, "invalid_rate": 0.0}, {}, "base")
    assert not d.promote and "missing for the reference" in d.checks[0].reason
    d = decide(POLICY, {"jsd_mean": float("nan"), "invalid_rate": 0.0}, {"jsd_mean": 0.4}, "base")
    assert not d.promote


def test_policy_file_rules(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text("checks:\n"
                 "  - {metric: jsd_mean, rule: decrease, by: 0.05, or_at_most: 0.1}\n"
                 "  - {metric: invalid_rate, rule: at_most, value: 0.02}\n"
                 "  - {metric: bench.gsm8k, rule: no_regression, tolerance: 0.02}\n")
    pol = load_policy(p)
    ref = {"jsd_mean": 0.3, "bench.gsm8k": 0.5}
    assert decide(pol, {"jsd_mean": 0.24, "invalid_rate": 0.0, "bench.gsm8k": 0.49}, ref, "c").promote
    assert not decide(pol, {"jsd_mean": 0.26, "invalid_rate": 0.0, "bench.gsm8k": 0.49}, ref, "c").promote
    assert decide(pol, {"jsd_mean": 0.09, "invalid_rate": 0.0, "bench.gsm8k": 0.5}, {"bench.gsm8k": 0.5}, "c").promote
    assert not decide(pol, {"jsd_mean": 0.09, "invalid_rate": 0.0, "bench.gsm8k": 0.47}, ref, "c").promote


@pytest.mark.parametrize("data,msg", [
    ({"checks": [{"metric": "jsd_meen", "rule": "decrease"}]}, "unknown metric 'jsd_meen'"),
    ({"checks": [{"metric": "jsd_mean", "rule": "shrink"}]}, "rule must be one of"),
    ({"checks": [{"metric": "invalid_rate", "rule": "at_most"}]}, "needs a 'value'"),
    ({"checks": []}, "non-empty list"),
    ({"checks": [{"metric": "jsd_mean", "rule": "decrease", "by": -1}]}, "must be >= 0"),
    ({"rules": []}, "unknown key 'rules'"),
])
def test_malformed_policies(data, msg):
    with pytest.raises(ConfigError, match=msg):
        policy_from_dict(data)


def test_decision_round_trips_through_tags():
    d = decide(POLICY, {"jsd_mean": 0.2, "invalid_rate": 0.01}, {"jsd_mean": 0.4}, "base")
    back = decision_from_tags(d.as_tags())
    assert back.promote == d.promote and back.policy_hash == d.policy_hash == POLICY.digest()
    assert len(back.checks) == 2 and all(c.passed for c in back.checks)
