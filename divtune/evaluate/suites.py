"""The evaluation suites a run gates on, and the one registry of their headline metrics.

``cfg.evaluate.suites`` names which suites the evaluate stage runs on base and candidate:
``lists`` (held-out list uniformity), ``open_set`` (Unique@N), ``creative`` (embedding distance,
Self-BLEU), ``novelty`` (NoveltyBench distinct_k, utility_k) and ``benchmarks`` (lm-eval coherence,
``bench.<task>``).  :data:`METRICS` is the only list
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
#: NoveltyBench (suite ``novelty``, :mod:`divtune.evaluate.novelty`); registered as soon as the config accepts it.
NOVELTY_METRICS = {
    "distinct_k": "NoveltyBench distinct_k: equivalence classes among k generations, mean over prompts",
    "utility_k": "NoveltyBench utility_k: patience-weighted quality of novel generations, mean over prompts",
}
if "novelty" in SUITES:
    METRICS["novelty"] = NOVELTY_METRICS
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
    nov = getattr(cfg.evaluate, "novelty", None)
    if "novelty" in cfg.evaluate.suites and nov is not None and nov.prompts:  # the file's content, not its path
        from divtune.evaluate.novelty import load_novelty_prompts

        payload["evaluate"]["novelty"]["prompts"] = [[p.id, p.prompt] for p in load_novelty_prompts(nov.prompts)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_lists(generator: Any, cfg: Any, examples: Any = None, *, samples: int | None = None,
              sampling: Any = None) -> dict[str, Any]:
    """The lists suite as a config sets it up (held-out lists unless ``examples``; the config's prompting and
    sampling contract, or ``sampling``)."""
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.lists import evaluate_lists

    e = cfg.evaluate
    return evaluate_lists(generator, examples if examples is not None else heldout_examples(e.template_id),
                          samples=samples or e.samples_per_list, sampling=sampling or sampling_for(cfg),
                          system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)


def sampling_for(cfg: Any, **override: Any):
    """The evaluation's sampling contract from ``cfg.evaluate`` (temperature, top_p, top_k, min_p,
    repetition_penalty, max_new_tokens, seed); ``override`` replaces fields (``n`` is set per call)."""
    import dataclasses as dc

    from divtune.models.sampling import from_config

    return dc.replace(from_config(cfg.evaluate), **override)


def make_generator_for(cfg: Any, model_dir: str | os.PathLike):
    """The backend ``cfg.evaluate.backend`` picks (``auto``: vLLM offline on a GPU with vLLM, else transformers)."""
    from divtune.evaluate.generation import HFGenerator, VLLMGenerator, pick_backend

    if pick_backend(cfg.evaluate.backend) == "vllm":
        return VLLMGenerator(str(model_dir), trust_remote_code=cfg.model.trust_remote_code)
    return HFGenerator(model_dir, batch_size=cfg.evaluate.batch_size, trust_remote_code=cfg.model.trust_remote_code)


def run_novelty(generator: Any, cfg: Any) -> dict[str, Any]:
    """The novelty suite as ``cfg.evaluate.novelty`` sets it up: the evaluation's temperature and seed, the suite's
    ``max_new_tokens``, neutral filters (top_p 1, top_k 0, min_p 0, repetition_penalty 1) like open_set and
    creative."""
    from divtune.evaluate.novelty import (NoveltyQuality, evaluate_novelty, load_novelty_prompts,
                                          make_novelty_partitioner)
    from divtune.errors import ConfigError

    n = cfg.evaluate.novelty
    if not n.prompts:
        raise ConfigError("evaluate.suites has novelty: set evaluate.novelty.prompts (a JSONL prompts file)")
    prompts = load_novelty_prompts(n.prompts)
    quality = NoveltyQuality(n.quality, n.reward_model_path, reward_scale=n.reward_scale)
    part, info = make_novelty_partitioner(n.partitioner, n.partitioner_path, n.threshold)
    return evaluate_novelty(generator, prompts, k=n.k, partitioner=part, partitioner_info=info, quality=quality,
                            patience=n.patience, temperature=cfg.evaluate.temperature,
                            max_new_tokens=n.max_new_tokens, seed=cfg.evaluate.seed,
                            system_prompt=cfg.data.system_prompt)


def evaluate_model(cfg: Any, model_dir: str | os.PathLike) -> tuple[dict[str, float], dict[str, Any]]:
    """The suites of ``cfg.evaluate.suites`` on one model: ``(headline metrics, results by suite)``."""
    e = cfg.evaluate
    filters = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
    on = [k for k, off in filters.items() if getattr(e, k) != off]
    other = [s for s in ("novelty",) if s in e.suites]
    if on and other:  # those suites sample with the contract's neutral filters: never a silently ignored setting
        from divtune.errors import ConfigError

        raise ConfigError(f"evaluate.{on[0]} applies to the lists, open_set and creative suites; suite {other[0]} "
                          "samples with top_p 1, "
                          "top_k 0, min_p 0 and repetition_penalty 1 (sent explicitly)")
    results: dict[str, Any] = {}
    gen = None
    if any(s in e.suites for s in METRICS):
        gen = make_generator_for(cfg, model_dir)
    if "lists" in e.suites:
        results["lists"] = run_lists(gen, cfg)
    if "open_set" in e.suites:
        from divtune.evaluate.open_set import evaluate_open_set

        results["open_set"] = evaluate_open_set(gen, samples=e.open_set_samples, sampling=sampling_for(cfg),
                                                system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    if "creative" in e.suites:
        from divtune.evaluate.creative import evaluate_creative

        results["creative"] = evaluate_creative(gen, samples=e.creative_samples,
                                                sampling=sampling_for(cfg, max_new_tokens=e.creative_max_new_tokens))
    if "novelty" in e.suites:
        results["novelty"] = run_novelty(gen, cfg)
    if "benchmarks" in e.suites:
        from divtune.evaluate.benchmarks import run_benchmarks

        if hasattr(gen, "close"):  # a vLLM engine holds most of the GPU: free it first
            gen.close()
        del gen  # lm-eval loads its own copy of the model
        results["benchmarks"] = run_benchmarks(model=str(model_dir), data=e.benchmarks_data, tasks=e.benchmarks_tasks,
                                               runs=e.benchmarks_runs, allow_code_execution=e.allow_code_execution,
                                               limit=e.benchmarks_limit, seed=e.seed,
                                               trust_remote_code=cfg.model.trust_remote_code)
    return headline(results), results
