"""The evaluation suites a run gates on, and the one registry of their headline metrics.

``cfg.evaluate.suites`` names which suites the evaluate stage runs on base and candidate:
``lists`` (held-out list uniformity), ``open_set`` (Unique@N), ``creative`` (embedding distance,
Self-BLEU) and ``benchmarks`` (lm-eval coherence, ``bench.<task>``).  :data:`METRICS` is the only list
of the metric names they produce: the gate validates policies against it, the registry table and
the run summary read it.  :func:`evaluate_model` runs the suites with the same sets, seeds and
sampling settings for every model the gate compares; :func:`eval_fingerprint` says when two such
evaluations are comparable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from divtune.config.validate import SUITES as CONFIG_SUITES

#: Headline metrics by suite: name -> what it measures (``bench.<task>`` come from the benchmarks suite).
METRICS: dict[str, dict[str, str]] = {
    "lists": {
        "jsd_mean": "held-out list JSD to uniform (lower is more uniform)",
        "invalid_rate": "held-out list invalid-answer rate",
        "entropy_mean": "held-out list answer entropy, bits",
    },
    "open_set": {"unique_at_n": "open-set Unique@N, mean over categories"},
    "creative": {
        "pairwise_cosine_distance": "creative writing mean pairwise embedding distance",
        "one_minus_self_bleu": "creative writing 1 - Self-BLEU",
    },
}
#: Prefix of the benchmarks suite's metrics: ``bench.gsm8k``, ``bench.math``, ...
BENCH_PREFIX = "bench."
SUITES = CONFIG_SUITES  # the names evaluate.suites accepts (the config validates them)
assert set(METRICS) < set(SUITES), "every suite with headline metrics is a configurable suite"


def known_metrics() -> dict[str, str]:
    """Every suite's headline metric names with their descriptions, in suite order."""
    return {name: desc for names in METRICS.values() for name, desc in names.items()}


def is_known_metric(name: str) -> bool:
    return name in known_metrics() or (name.startswith(BENCH_PREFIX) and len(name) > len(BENCH_PREFIX))


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The gate's numbers from results by suite (missing or null values are left out, never invented)."""
    out: dict[str, float] = {}
    for suite, names in METRICS.items():
        for k in names if suite in results else ():
            if results[suite].get(k) is not None:
                out[k] = float(results[suite][k])
    if "benchmarks" in results:
        out.update({k: float(v) for k, v in results["benchmarks"]["metrics"].items() if v is not None})
    return out


def eval_fingerprint(cfg: Any) -> str:
    """What makes two evaluations comparable: the evaluation settings, sets, seeds and prompting."""
    from divtune.data.lists import heldout_examples

    payload = {"evaluate": dataclasses.asdict(cfg.evaluate), "system_prompt": cfg.data.system_prompt,
               "few_shot": cfg.data.few_shot,
               "lists": [[ex.id, ex.prompt] for ex in heldout_examples(cfg.evaluate.template_id)]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_lists(generator: Any, cfg: Any, examples: Any = None, *, samples: int | None = None) -> dict[str, Any]:
    """The lists suite as a config sets it up (held-out lists unless ``examples``; the config's prompting)."""
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.lists import evaluate_lists

    e = cfg.evaluate
    return evaluate_lists(generator, examples if examples is not None else heldout_examples(e.template_id),
                          samples=samples or e.samples_per_list, temperature=e.temperature,
                          max_new_tokens=e.max_new_tokens, seed=e.seed, system_prompt=cfg.data.system_prompt,
                          few_shot=cfg.data.few_shot)


def evaluate_model(cfg: Any, model_dir: str | os.PathLike) -> tuple[dict[str, float], dict[str, Any]]:
    """The suites of ``cfg.evaluate.suites`` on one model: ``(headline metrics, results by suite)``."""
    from divtune.evaluate.generation import HFGenerator

    e = cfg.evaluate
    results: dict[str, Any] = {}
    gen = None
    if any(s in e.suites for s in METRICS):
        gen = HFGenerator(model_dir, batch_size=e.batch_size, trust_remote_code=cfg.model.trust_remote_code)
    if "lists" in e.suites:
        results["lists"] = run_lists(gen, cfg)
    if "open_set" in e.suites:
        from divtune.evaluate.open_set import evaluate_open_set

        results["open_set"] = evaluate_open_set(gen, samples=e.open_set_samples, temperature=e.temperature,
                                                max_new_tokens=e.max_new_tokens, seed=e.seed,
                                                system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    if "creative" in e.suites:
        from divtune.evaluate.creative import evaluate_creative

        results["creative"] = evaluate_creative(gen, samples=e.creative_samples, temperature=e.temperature,
                                                max_new_tokens=e.creative_max_new_tokens, seed=e.seed)
    if "benchmarks" in e.suites:
        from divtune.evaluate.benchmarks import run_benchmarks

        del gen  # lm-eval loads its own copy of the model
        results["benchmarks"] = run_benchmarks(model=str(model_dir), data=e.benchmarks_data, tasks=e.benchmarks_tasks,
                                               runs=e.benchmarks_runs, allow_code_execution=e.allow_code_execution,
                                               limit=e.benchmarks_limit, seed=e.seed,
                                               trust_remote_code=cfg.model.trust_remote_code)
    return headline(results), results
