"""The promotion state machine: gate a candidate, register it once, move the aliases.

A run's candidate is registered with its decision and metrics as version tags in one call;
``challenger`` always moves to it, ``champion`` only if every check passed.  The reference is the
current champion, on this run's evaluation sets and seeds (its recorded metrics when they were
measured with the same settings, else the champion evaluated again), or the base model the first
time.  Re-running the promotion of one run key reuses its version instead of registering another.
This module owns the version tags it writes, and reads them back for the registry table.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from divtune import paths
from divtune.evaluate import suites
from divtune.promotion import gate
from divtune.registry import models as reg
from divtune.registry import tracking

METRIC_TAG = "divtune.metric."
BASE_METRIC_TAG = "divtune.base_metric."
EVAL_FP_TAG = "divtune.eval_fingerprint"
DECISION_TAG = "divtune.decision"
VERSION_TAG = "divtune.version"
APPROVAL_TAG = "divtune.approval"  # pending | approved (policies with approval: manual)
APPROVED_BY_TAG = "divtune.approved_by"
APPROVED_AT_TAG = "divtune.approved_at"


def policy_for(cfg: Any) -> gate.Policy:
    """The configured policy file, or the built-in rule from the gate section."""
    g = cfg.gate
    if g.policy:
        return gate.load_policy(g.policy)
    return gate.default_policy(g.max_invalid_rate, g.min_jsd_improvement, g.approval)


def champion_reference(cfg: Any, name: str, champion: Any,
                       evaluate: Callable[[Any, str], dict[str, float]] | None = None) -> tuple[dict[str, float], str]:
    """The champion's metrics on this run's evaluation sets and seeds, and how to name it.

    Its recorded metrics are reused when they were measured with the same evaluation settings (same
    fingerprint); otherwise the champion is fetched from the registry and evaluated again
    (``evaluate(cfg, model_dir)``, by default :func:`divtune.evaluate.suites.evaluate_model`).
    """
    fp = suites.eval_fingerprint(cfg)
    if champion.tags.get(EVAL_FP_TAG) == fp:
        return ({k[len(METRIC_TAG):]: float(v) for k, v in champion.tags.items() if k.startswith(METRIC_TAG)},
                f"champion v{champion.version}")
    from divtune.models.pointers import model_dir_of

    print(f"champion v{champion.version} was evaluated with other settings: evaluating it again on this run's "
          "sets and seeds", file=sys.stderr)
    run = evaluate or (lambda c, d: suites.evaluate_model(c, d)[0])
    with tempfile.TemporaryDirectory(prefix="divtune-champion-") as tmp:
        path = reg.download_model_version(f"models:/{name}/{champion.version}", tmp)
        metrics = run(cfg, model_dir_of(path))
    return metrics, f"champion v{champion.version} (re-evaluated)"


def promote(cfg: Any, run_key: str, source: str, source_run_id: str, candidate: Mapping[str, float],
            base: Mapping[str, float], policy: gate.Policy) -> tuple[Any, gate.Decision, dict[str, float] | None]:
    """Decide, register (once per run key) and move aliases: ``(model version, decision, re-evaluated champion)``.

    The third item holds the champion's metrics when it had to be evaluated again, for the caller to log.
    """
    name = cfg.registry.model_name
    existing = reg.version_for_run_key(name, run_key)
    champion = reg.get_alias(name, reg.CHAMPION)
    reevaluated = None
    if existing is not None:  # a retry of this run's promotion: the decision is already on the version
        decision = gate.decision_from_tags(existing.tags)
        prev = existing.tags.get(reg.PREVIOUS_CHAMPION_TAG, "")
        reg.set_alias(name, reg.CHALLENGER, existing.version)
        pending = existing.tags.get(APPROVAL_TAG) == "pending"
        if decision.promote and not pending and (champion is None or str(champion.version) == prev):
            reg.set_alias(name, reg.CHAMPION, existing.version)
        return existing, decision, None
    if champion is not None:
        ref, ref_name = champion_reference(cfg, name, champion)
        reevaluated = ref if "re-evaluated" in ref_name else None
    else:
        ref, ref_name = dict(base), "base"
    decision = gate.decide(policy, dict(candidate), ref, ref_name)
    tags = {**decision.as_tags(),
            **{f"{METRIC_TAG}{k}": f"{v:.6g}" for k, v in candidate.items()},
            **{f"{BASE_METRIC_TAG}{k}": f"{v:.6g}" for k, v in base.items()},
            reg.PREVIOUS_CHAMPION_TAG: str(champion.version) if champion is not None else "",
            "divtune.config_fingerprint": cfg.fingerprint(), "divtune.method": cfg.train.method,
            EVAL_FP_TAG: suites.eval_fingerprint(cfg)}
    manual = decision.promote and policy.approval == "manual"
    if manual:
        tags[APPROVAL_TAG] = "pending"
    mv = reg.register_version(name, source, source_run_id, run_key, tags,
                              description=f"{cfg.train.method} candidate from pipeline run {run_key}")
    reg.set_alias(name, reg.CHALLENGER, mv.version)
    if decision.promote and not manual:
        reg.set_alias(name, reg.CHAMPION, mv.version)
    return mv, decision, reevaluated


def approve(name: str, version: str, *, by: str) -> dict[str, str]:
    """A person's approval (policies with ``approval: manual``): the challenger that passed the gate becomes
    champion; who and when are version tags.  Refused, with nothing changed, for a version that is not the
    current challenger, did not pass the gate, or is not awaiting approval."""
    import datetime

    from divtune.errors import DivtuneError

    reg.require_model(name)
    if not (str(version).isascii() and str(version).isdigit()):
        raise DivtuneError(f"version must be a number, got {version!r:.40}")
    challenger = reg.get_alias(name, reg.CHALLENGER)
    if challenger is None or str(challenger.version) != str(version):
        now = f"v{challenger.version} is" if challenger is not None else "there is no challenger"
        raise DivtuneError(f"{name} v{version} is not the challenger ({now}); only the current challenger can be "
                           "approved")
    tags = challenger.tags
    if tags.get(DECISION_TAG) != "promote":
        raise DivtuneError(f"{name} v{version} did not pass the gate ({tags.get(DECISION_TAG, 'no decision')}); "
                           "nothing to approve")
    if tags.get(APPROVAL_TAG) != "pending":
        raise DivtuneError(f"{name} v{version} is not awaiting approval "
                           f"({tags.get(APPROVAL_TAG) or 'its policy promoted it automatically'})")
    champion = reg.get_alias(name, reg.CHAMPION)
    c = tracking.client()
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    for k, v in ((APPROVED_BY_TAG, by), (APPROVED_AT_TAG, when), (APPROVAL_TAG, "approved"),
                 (reg.PREVIOUS_CHAMPION_TAG, str(champion.version) if champion is not None else "")):
        c.set_model_version_tag(name, str(version), k, v)
    reg.set_alias(name, reg.CHAMPION, version)
    return {"registered_model": name, "champion": str(version), "approved_by": by, "approved_at": when,
            "previous_champion": str(champion.version) if champion is not None else ""}


def summary(run_key: str, name: str, mv: Any, decision: gate.Decision, candidate: Mapping[str, float],
            base: Mapping[str, float]) -> dict[str, Any]:
    """What a promotion reports (the run's ``summary.json``)."""
    current = reg.get_alias(name, reg.CHAMPION)
    held = [(reg.CHALLENGER, mv.version), (reg.CHAMPION, current.version if current else None)]
    return {
        "run_key": run_key,
        "registered_model": name,
        "version": str(mv.version),
        "aliases": sorted(a for a, v in held if str(v) == str(mv.version)),
        "champion_version": str(current.version) if current else None,
        "decision": decision.to_dict(),
        "approval": dict(getattr(mv, "tags", None) or {}).get(APPROVAL_TAG, ""),
        "base": dict(base),
        "candidate": dict(candidate),
        "tracking_uri": paths.tracking_uri(),
        "ui_command": tracking.ui_command(),
    }


def format_summary(s: Mapping[str, Any]) -> str:
    """The run summary a person reads: every headline metric the suites produced, the gate, the registry."""
    d = s["decision"]
    lines = ["", "divtune retraining run " + s["run_key"]]
    names = [n for n in suites.known_metrics() if n in s["candidate"]]
    names += sorted(k for k in s["candidate"] if k.startswith(suites.BENCH_PREFIX))
    for name in names:  # the headline metrics the configured suites produced, in the registry's order
        b = s["base"].get(name)
        lines.append(f"  {name:<26} base {'-' if b is None else f'{b:.3f}'}   candidate {s['candidate'][name]:.3f}")
    lines += [
        f"  gate ({'PROMOTE' if d['promote'] else 'REJECT'}, against {d['reference']}):",
        *[f"    [{'pass' if c['passed'] else 'FAIL'}] {c['reason']}" for c in d["checks"]],
        f"  registered: {s['registered_model']} version {s['version']} "
        f"aliases: {', '.join(s['aliases']) or 'none'} "
        f"({'champion is v' + str(s['champion_version']) if s['champion_version'] else 'no champion yet'})",
        *([f"  awaiting approval: divtune registry approve {s['registered_model']} {s['version']}"]
          if s.get("approval") == "pending" else []),
        f"  MLflow store: {s['tracking_uri']}",
        f"  open the UI:  {s['ui_command']}",
    ]
    return "\n".join(lines)


#: The registry table's metric columns (from the suites' registry; a version shows "-" where it has none).
TABLE_METRICS = ("jsd_mean", "invalid_rate", "unique_at_n")


def version_table(name: str) -> str:
    """Every version of ``name`` with its aliases, decision, key metrics and lineage, as a text table."""
    reg.require_model(name)
    versions = sorted(tracking.client().search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    cols = [m for m in TABLE_METRICS if any(f"{METRIC_TAG}{m}" in v.tags for v in versions)] or list(TABLE_METRICS[:2])
    lines = [f"{'version':>7}  {'aliases':<20} {'decision':<8} " + " ".join(f"{c[:12]:>12}" for c in cols)
             + "  prev  run_key"]
    for v in versions:
        t = v.tags
        lines.append(f"{v.version:>7}  {','.join(v.aliases or []):<20} {t.get(DECISION_TAG, '?'):<8} "
                     + " ".join(f"{t.get(METRIC_TAG + c, '-'):>12}" for c in cols)
                     + f"  {t.get(reg.PREVIOUS_CHAMPION_TAG, '') or '-':>4}  {t.get(reg.RUN_KEY_TAG, '-')}")
    lineage = reg.champion_lineage(name)
    lines.append("champion lineage: " + (" <- ".join(f"v{v}" for v in lineage) if lineage else "(no champion)"))
    lines.append("sources (what a deployment serves):")
    lines += [f"  v{v.version}: {v.source}" for v in versions]
    return "\n".join(lines)
