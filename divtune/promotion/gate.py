"""The promotion gate: a validated policy and a pure decision function.

A policy is a list of checks over named evaluation metrics.  The candidate is compared with a
*reference* (the current champion's metrics, or the base model's when there is no champion yet)
measured on the same evaluation sets and seeds.  A missing metric is a failed check, never a
pass.  :func:`decide` is pure: same inputs, same decision.

Policy YAML::

    checks:
      - {metric: jsd_mean, rule: decrease, by: 0.0, or_at_most: 0.10}   # lower is better
      - {metric: unique_at_n, rule: increase, by: 0}                   # higher is better
      - {metric: invalid_rate, rule: at_most, value: 0.05}             # ceiling
      - {metric: bench.gsm8k, rule: no_regression, tolerance: 0.02}    # higher is better, within tolerance
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from divtune.errors import ConfigError, one_line, short
from divtune.evaluate.suites import BENCH_PREFIX, is_known_metric, known_metrics

APPROVALS = ("auto", "manual")  # manual: a passing candidate needs `divtune registry approve` to become champion
RULES = ("decrease", "increase", "at_most", "at_least", "no_regression")


@dataclass(frozen=True)
class Check:
    metric: str
    rule: str
    by: float = 0.0  # decrease/increase: required margin over the reference (strict)
    or_at_most: float | None = None  # decrease: also passes when the value is at most this
    or_at_least: float | None = None  # increase: also passes when the value is at least this
    value: float | None = None  # at_most / at_least bound
    tolerance: float = 0.0  # no_regression: allowed drop below the reference

    def needs_reference(self) -> bool:
        return self.rule in ("decrease", "increase", "no_regression")


@dataclass(frozen=True)
class Policy:
    checks: tuple[Check, ...]
    source: str = "built-in"
    approval: str = "auto"  # manual: a passing candidate stays challenger until `divtune registry approve`

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checks": [{k: v for k, v in asdict(c).items() if v is not None} for c in self.checks]}
        if self.approval != "auto":
            out["approval"] = self.approval
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CheckResult:
    metric: str
    rule: str
    passed: bool
    candidate: float | None
    reference: float | None
    reason: str


@dataclass
class Decision:
    promote: bool
    reference: str  # e.g. "champion v3" or "base"
    checks: list[CheckResult] = field(default_factory=list)
    policy_hash: str = ""

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reference": self.reference, "policy_hash": self.policy_hash,
                "checks": [asdict(c) for c in self.checks]}

    def as_tags(self) -> dict[str, str]:
        tags = {
            "divtune.decision": "promote" if self.promote else "reject",
            "divtune.decision.reference": self.reference,
            "divtune.decision.policy_hash": self.policy_hash,
        }
        for c in self.checks:
            tags[f"divtune.check.{c.metric}.{c.rule}"] = f"{'pass' if c.passed else 'fail'}: {c.reason}"
        return tags


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ConfigError(f"{where} must be a finite number, got {v!r}")
    return float(v)


def check_metric_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: metric must be a non-empty string")
    if is_known_metric(name):
        return name
    raise ConfigError(f"{where}: unknown metric {name!r} (known: {', '.join(sorted(known_metrics()))}, {BENCH_PREFIX}<task>)")


def policy_from_dict(data: Any, source: str = "policy") -> Policy:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: policy must be a mapping with a 'checks' list")
    unknown = sorted(map(str, set(data) - {"checks", "approval"}))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (allowed: approval, checks)")
    approval = data.get("approval", "auto")
    if approval not in APPROVALS:
        raise ConfigError(f"{source}: approval must be one of {', '.join(APPROVALS)}, got {short(approval, 40)}")
    raw = data.get("checks")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'checks' must be a non-empty list")
    allowed = {"metric", "rule", "by", "or_at_most", "or_at_least", "value", "tolerance"}
    checks = []
    for i, c in enumerate(raw):
        where = f"{source}: checks[{i}]"
        if not isinstance(c, Mapping):
            raise ConfigError(f"{where} must be a mapping")
        bad = sorted(set(c) - allowed)
        if bad:
            raise ConfigError(f"{where}: unknown key {bad[0]!r} (allowed: {', '.join(sorted(allowed))})")
        metric = check_metric_name(c.get("metric"), where)
        rule = c.get("rule")
        if rule not in RULES:
            raise ConfigError(f"{where}: rule must be one of {', '.join(RULES)}, got {rule!r}")
        kw: dict[str, Any] = {"metric": metric, "rule": rule}
        for k in ("by", "tolerance"):
            if k in c:
                kw[k] = _num(c[k], f"{where}.{k}")
                if kw[k] < 0:
                    raise ConfigError(f"{where}.{k} must be >= 0, got {c[k]!r}")
        for k in ("or_at_most", "or_at_least", "value"):
            if c.get(k) is not None:
                kw[k] = _num(c[k], f"{where}.{k}")
        if rule in ("at_most", "at_least") and "value" not in kw:
            raise ConfigError(f"{where}: rule {rule} needs a 'value'")
        checks.append(Check(**kw))
    return Policy(tuple(checks), source=source, approval=approval)


def load_policy(path: str | os.PathLike) -> Policy:
    from divtune import files

    p = Path(path)
    text = files.read_text(p, noun="policy", max_mb=files.limit("INPUT_MB"), error=ConfigError)
    return policy_from_dict(files.load_yaml(text, where=f"policy file {p}", error=ConfigError), source=str(p))


def default_policy(max_invalid_rate: float, min_jsd_improvement: float, approval: str = "auto") -> Policy:
    """The built-in rule: held-out JSD falls by more than the margin; invalid rate under a ceiling."""
    return Policy((
        Check("jsd_mean", "decrease", by=min_jsd_improvement),
        Check("invalid_rate", "at_most", value=max_invalid_rate),
    ), approval=approval)


# --------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------


def _get(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    if not metrics or name not in metrics or metrics[name] is None:
        return None
    try:
        v = float(metrics[name])
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def evaluate_check(c: Check, cand: Mapping[str, Any], ref: Mapping[str, Any] | None) -> CheckResult:
    x, r = _get(cand, c.metric), _get(ref, c.metric)
    if x is None:
        return CheckResult(c.metric, c.rule, False, None, r, f"{c.metric} missing for the candidate")
    if c.rule == "at_most":
        ok = x <= c.value  # type: ignore[operator]
        return CheckResult(c.metric, c.rule, ok, x, None, f"{c.metric} {x:.4f} {'<=' if ok else '>'} {c.value:.4f}")
    if c.rule == "at_least":
        ok = x >= c.value  # type: ignore[operator]
        return CheckResult(c.metric, c.rule, ok, x, None, f"{c.metric} {x:.4f} {'>=' if ok else '<'} {c.value:.4f}")
    if c.rule == "decrease":
        if c.or_at_most is not None and x <= c.or_at_most:
            return CheckResult(c.metric, c.rule, True, x, r, f"{c.metric} {x:.4f} <= {c.or_at_most:.4f} (absolute bound)")
        if r is None:
            return CheckResult(c.metric, c.rule, False, x, None, f"{c.metric} missing for the reference")
        ok = r - x > c.by
        return CheckResult(c.metric, c.rule, ok, x, r,
                           f"{c.metric} {x:.4f} vs reference {r:.4f} (change {x - r:+.4f}, needs < -{c.by:.4f})")
    if c.rule == "increase":
        if c.or_at_least is not None and x >= c.or_at_least:
            return CheckResult(c.metric, c.rule, True, x, r, f"{c.metric} {x:.4f} >= {c.or_at_least:.4f} (absolute bound)")
        if r is None:
            return CheckResult(c.metric, c.rule, False, x, None, f"{c.metric} missing for the reference")
        ok = x - r > c.by
        return CheckResult(c.metric, c.rule, ok, x, r,
                           f"{c.metric} {x:.4f} vs reference {r:.4f} (change {x - r:+.4f}, needs > +{c.by:.4f})")
    # no_regression (higher is better)
    if r is None:
        return CheckResult(c.metric, c.rule, False, x, None, f"{c.metric} missing for the reference")
    ok = x >= r - c.tolerance
    return CheckResult(c.metric, c.rule, ok, x, r,
                       f"{c.metric} {x:.4f} vs reference {r:.4f} (tolerance {c.tolerance:.4f})")


def decide(policy: Policy, candidate: Mapping[str, Any], reference: Mapping[str, Any] | None,
           reference_name: str) -> Decision:
    """Promote only if every check passes."""
    results = [evaluate_check(c, candidate, reference) for c in policy.checks]
    return Decision(promote=all(r.passed for r in results), reference=reference_name, checks=results,
                    policy_hash=policy.digest())


def decision_from_tags(tags: Mapping[str, str]) -> Decision:
    """Rebuild a recorded decision from a model version's tags (for idempotent re-runs)."""
    checks = []
    for k, v in sorted(tags.items()):
        if k.startswith("divtune.check."):
            metric, _, rule = k[len("divtune.check."):].rpartition(".")
            passed, _, reason = v.partition(": ")
            checks.append(CheckResult(metric, rule, passed == "pass", None, None, reason))
    return Decision(promote=tags.get("divtune.decision") == "promote",
                    reference=tags.get("divtune.decision.reference", ""), checks=checks,
                    policy_hash=tags.get("divtune.decision.policy_hash", ""))
