"""Reproductions: the GAPO paper's uniformity comparison (Table 8 / Figure 4 shape) on any preset.

``uniformity`` trains every method from the same base on the same synthesized data, merges each
adapter, samples the held-out lists with the same seeds and prints one markdown row per model:
JSD to uniform (lower is better), invalid rate, unique answers per list, and the row's sampling.  The base
model also gets the no-training rows a user would try first (:data:`BASELINES`): Table 8's Min-p 0.05 and
0.1, a temperature sweep, and a verbalized-sampling prompt.  Everything is
logged to one MLflow run (metrics per model, the table, a bar chart of answer distributions).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from divtune.config import PipelineConfig


def _train_and_merge(cfg: PipelineConfig, method: str, base: Path, rows: list[dict], work: Path) -> Path:
    from divtune.models.merge import merge_lora
    from divtune.train.trainer import train

    tc = dataclasses.replace(cfg.train, method=method)
    adapter, merged = work / f"{method}-adapter", work / f"{method}-merged"
    train(base, rows, tc, adapter, work / f"{method}-ckpt", trust_remote_code=cfg.model.trust_remote_code,
          dtype=cfg.model.dtype, system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    merge_lora(base, adapter, merged, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
    return merged


def _model_for(cfg: PipelineConfig, method: str, base: Path, rows: list[dict], work: Path,
               trained: dict[str, str]) -> Path:
    """The base itself for ``base``; otherwise train + merge ``method`` and record its merged directory."""
    if method == "base":
        return base
    merged = _train_and_merge(cfg, method, base, rows, work)
    trained[method] = str(merged)
    return merged


def _record(kind: str, cfg: PipelineConfig, rows: list[dict[str, Any]], **settings: Any) -> Path:
    """The repro's table as a dated result file (``docs/results.md`` renders it; see :mod:`divtune.results`)."""
    from divtune import results

    e, t = cfg.evaluate, cfg.train
    return results.record(kind, {"rows": rows}, preset=cfg.name,
                          seeds={"data": cfg.data.seed, "train": t.seed, "evaluate": e.seed},
                          settings={**settings, "max_steps": t.max_steps, "num_generations": t.num_generations,
                                    "learning_rate": t.learning_rate, "temperature": e.temperature,
                                    "max_new_tokens": e.max_new_tokens, "model_source": cfg.model.source,
                                    "config_fingerprint": cfg.fingerprint()})


def _prepare(cfg: PipelineConfig, work_dir: str | None, prefix: str) -> tuple[Path, list[dict], Path]:
    """The shared base model, the synthesized training rows, a work dir; tracking set up."""
    from divtune import results  # noqa: F401 - imported at the start: a result names the commit that ran
    from divtune.data.lists import synthesize_lists
    from divtune.registry import tracking
    from divtune.models.resolve import resolve_base_model

    base = resolve_base_model(cfg.model)
    rows = [ex.to_row() for ex in synthesize_lists(cfg.data.num_examples, cfg.data.seed, cfg.data.categories,
                                                    cfg.data.min_len, cfg.data.max_len)]
    from divtune import outputs

    if work_dir:  # a user's directory: divtune's own earlier work, or new; never someone else's files
        outputs.check_output_dir(work_dir, flag="--work-dir")
    work = Path(work_dir or tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    outputs.mark(work, "repro")
    tracking.setup()
    return base, rows, work


#: Trained methods: each is trained from the base and sampled with the evaluation's settings.
TRAINED = ("sft", "grpo", "gapo")
#: No-training baselines on the base model, so that training is credited only with what sampling or prompting
#: cannot do: the GAPO paper's Table 8 Min-p rows (0.05, 0.1), a temperature sweep, and verbalized sampling
#: (ask for several answers with probabilities, draw one; Zhang et al. 2025, arXiv 2510.01171).
BASELINES = ("minp-0.05", "minp-0.1", "temperature", "verbalized")
METHODS = ("base", *BASELINES, *TRAINED)
DEFAULT_METHODS = METHODS
#: The base's temperatures in the ``temperature`` baseline (the evaluation's own is the ``base`` row).
TEMPERATURE_SWEEP = (0.7, 1.3, 1.6, 2.0)
#: Candidate answers a verbalized-sampling completion states, and the new tokens it gets for them.
VERBALIZED_K, VERBALIZED_TOKENS_PER_ANSWER = 5, 24


def parse_methods(text: str) -> tuple[str, ...]:
    """``--methods base,grpo,...``: known method names, in the order given, or one line."""
    from divtune.errors import DivtuneError

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise DivtuneError(f"--methods: unknown method {bad[0] if bad else '(none)'!r} (use {', '.join(METHODS)})")
    return methods


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | JS to uniform (↓) | invalid rate | unique answers / list (↑) | list size | sampling |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['jsd_mean']:.3f} | {r['invalid_rate']:.3f} | "
                     f"{r['unique_mean']:.2f} | {r['list_size']:.0f} | {r.get('sampling', '')} |")
    return "\n".join(lines)


def sampling_note(sp: dict[str, Any], prompting: str | None = None) -> str:
    """A row's sampling in a few words: temperature, and every filter that is on."""
    parts = ["greedy" if sp["temperature"] == 0 else f"T={sp['temperature']:g}"]
    parts += [f"top_p {sp['top_p']:g}"] if sp["top_p"] < 1 else []
    parts += [f"top_k {sp['top_k']}"] if sp["top_k"] else []
    parts += [f"min_p {sp['min_p']:g}"] if sp["min_p"] else []
    parts += [f"rep. penalty {sp['repetition_penalty']:g}"] if sp["repetition_penalty"] != 1 else []
    return ", ".join(parts + ([prompting] if prompting else []))


def _baseline_runs(cfg: PipelineConfig, method: str) -> list[tuple[str, Any, bool]]:
    """``(row name, sampling, verbalized)`` for one no-training baseline (the base model, other sampling)."""
    import dataclasses as dc

    from divtune.evaluate import suites

    sp = suites.sampling_for(cfg)
    if method.startswith("minp-"):
        return [(f"base + min-p {method[5:]}", dc.replace(sp, min_p=float(method[5:])), False)]
    if method == "temperature":
        return [(f"base T={t:g}", dc.replace(sp, temperature=t), False)
                for t in TEMPERATURE_SWEEP if t != sp.temperature]
    assert method == "verbalized", method
    tokens = max(sp.max_new_tokens, VERBALIZED_K * VERBALIZED_TOKENS_PER_ANSWER)
    return [(f"base, verbalized (k={VERBALIZED_K})", dc.replace(sp, max_new_tokens=tokens), True)]


def _metric_key(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_")


def uniformity(cfg: PipelineConfig, methods: tuple[str, ...] = DEFAULT_METHODS, *,
               samples: int | None = None, work_dir: str | None = None) -> dict[str, Any]:
    """Every method of ``methods`` on the held-out lists, one row each (the temperature sweep: one per
    temperature).  The base and the no-training baselines share one loaded base model; every row records its
    sampling settings."""
    import mlflow

    from divtune.data.lists import heldout_examples
    from divtune.evaluate import plots, suites
    from divtune.evaluate.generation import HFGenerator
    from divtune.evaluate.lists import evaluate_lists_verbalized
    from divtune.registry import tracking

    e = cfg.evaluate
    n = samples or e.samples_per_list
    base, rows, work = _prepare(cfg, work_dir, "divtune-repro-")
    exp = tracking.experiment_id(cfg.registry.experiment)
    results: dict[str, dict[str, Any]] = {}
    trained: dict[str, str] = {}  # method -> its merged model directory
    table_rows = []
    base_gen = None

    def add(name: str, res: dict[str, Any], t0: float, prompting: str | None = None) -> None:
        row = {"model": name, "jsd_mean": res["jsd_mean"], "invalid_rate": res["invalid_rate"],
               "unique_mean": sum(p["unique"] for p in res["per_list"]) / len(res["per_list"]),
               "list_size": sum(len(p["items"]) for p in res["per_list"]) / len(res["per_list"]),
               "sampling": sampling_note(res["sampling"], prompting), "seconds": round(time.time() - t0, 1)}
        results[name] = res
        table_rows.append(row)
        key = _metric_key(name)
        mlflow.log_metrics({f"{key}.jsd_mean": row["jsd_mean"], f"{key}.invalid_rate": row["invalid_rate"],
                            f"{key}.unique_mean": row["unique_mean"]})
        print(f"[repro] {name}: JSD {row['jsd_mean']:.3f} invalid {row['invalid_rate']:.3f} ({row['seconds']} s)",
              flush=True)

    with mlflow.start_run(experiment_id=exp, run_name=f"repro-uniformity-{cfg.name}",
                          tags={"divtune.stage": "repro-uniformity"}):
        mlflow.log_params({"preset": cfg.name, "methods": ",".join(methods), "samples_per_list": n,
                           "max_steps": cfg.train.max_steps, "num_generations": cfg.train.num_generations})
        for m in methods:
            t0 = time.time()
            if m == "base" or m in BASELINES:
                base_gen = base_gen or HFGenerator(base, batch_size=e.batch_size,
                                                   trust_remote_code=cfg.model.trust_remote_code)
            if m in BASELINES:
                for name, sp, verbalized in _baseline_runs(cfg, m):
                    t0 = time.time()
                    if verbalized:
                        res = evaluate_lists_verbalized(base_gen, heldout_examples(e.template_id), samples=n,
                                                        sampling=sp, k=VERBALIZED_K,
                                                        system_prompt=cfg.data.system_prompt,
                                                        few_shot=cfg.data.few_shot)
                    else:
                        res = suites.run_lists(base_gen, cfg, samples=n, sampling=sp)
                    add(name, res, t0, "verbalized sampling" if verbalized else None)
                continue
            model_dir = _model_for(cfg, m, base, rows, work, trained)
            gen = base_gen if m == "base" else HFGenerator(model_dir, batch_size=e.batch_size,
                                                           trust_remote_code=cfg.model.trust_remote_code)
            add(m, suites.run_lists(gen, cfg, samples=n), t0)
        table = markdown_table(table_rows)
        mlflow.log_text(table, "uniformity.md")
        mlflow.log_text(json.dumps({"rows": table_rows, "results": results}, indent=2, default=str), "uniformity.json")
        chart = plots.answer_distributions_chart(results, work / "answer_distributions.png")
        mlflow.log_artifact(str(chart))
    saved = _record("repro-uniformity", cfg, table_rows, samples=n, methods=list(methods))
    return {"table": table, "rows": table_rows, "work_dir": str(work), "models": trained, "result": str(saved)}


def darling_baseline_train(tc):
    """The quality-only GRPO baseline of ``repro darling``, like-for-like with the reference's
    (``verl/math_scripts/grpo_baseline.batch`` is ``darling.batch`` without the diversity function and without
    ``norm_adv_by_std_in_grpo=False``): DARLING's own quality (the same 0/1 list validity), diversity switched
    off (floor 1: every response's diversity is 1, so the reward *is* the quality), and advantages divided by
    the group std (verl's default ``norm_adv_by_std_in_grpo: True``; TRL's ``scale_rewards="group"``).
    Everything else -- loss, schedule, KL, sampling -- is ``tc``'s."""
    dc = dataclasses.replace(tc.darling, partitioner="exact", partitioner_path=None, diversity_floor=1.0,
                             partition_correct_only=False)
    return dataclasses.replace(tc, method="darling", darling=dc, scale_rewards="group")


def _darling_train_and_merge(cfg: PipelineConfig, tc, label: str, base: Path, rows: list[dict], work: Path) -> Path:
    from divtune.models.merge import merge_lora
    from divtune.train.trainer import train

    adapter, merged = work / f"{label}-adapter", work / f"{label}-merged"
    train(base, rows, tc, adapter, work / f"{label}-ckpt", trust_remote_code=cfg.model.trust_remote_code,
          dtype=cfg.model.dtype, system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    merge_lora(base, adapter, merged, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
    return merged


def darling(cfg: PipelineConfig, *, samples: int | None = None, k: int = 4,
            work_dir: str | None = None) -> dict[str, Any]:
    """Quality-only GRPO vs DARLING from the same base: quality, distinct classes per prompt, pass@k.

    On list selection the quality is validity and an equivalence class is a distinct listed answer.
    DARLING trains with ``cfg.train`` (no std scaling, token-level loss); the ``grpo`` baseline with
    :func:`darling_baseline_train` -- the same 0/1 quality without diversity, advantages normalised by the
    group std as the reference's GRPO baseline does.
    """
    import mlflow

    from divtune.answers.metrics import pass_at_k
    from divtune.evaluate import suites
    from divtune.evaluate.generation import HFGenerator
    from divtune.registry import tracking

    if cfg.train.darling.quality != "list_validity":  # the repro trains and evaluates on synthesized lists
        from divtune.errors import ConfigError

        raise ConfigError(f"repro darling trains on list data: train.darling.quality must be list_validity, "
                          f"got {cfg.train.darling.quality!r} (e.g. --preset toy-darling)")
    e = cfg.evaluate
    n = samples or e.samples_per_list
    base, rows, work = _prepare(cfg, work_dir, "divtune-repro-darling-")
    table_rows = []
    trained: dict[str, str] = {}  # method -> its merged model directory
    with mlflow.start_run(experiment_id=tracking.experiment_id(cfg.registry.experiment),
                          run_name=f"repro-darling-{cfg.name}", tags={"divtune.stage": "repro-darling"}):
        mlflow.log_params({"preset": cfg.name, "samples_per_list": n, "k": k, "max_steps": cfg.train.max_steps,
                           "partitioner": cfg.train.darling.partitioner, "baseline_scale_rewards": "group",
                           "darling_scale_rewards": cfg.train.scale_rewards})
        runs = {"grpo": darling_baseline_train(cfg.train), "darling": dataclasses.replace(cfg.train, method="darling")}
        for m in ("base", "grpo", "darling"):
            t0 = time.time()
            if m == "base":
                model_dir = base
            else:
                model_dir = _darling_train_and_merge(cfg, runs[m], m, base, rows, work)
                trained[m] = str(model_dir)
            res = suites.run_lists(HFGenerator(model_dir, batch_size=e.batch_size), cfg, samples=n)
            per = res["per_list"]
            row = {"model": m, "quality": 1.0 - res["invalid_rate"],
                   "classes": sum(p["unique"] for p in per) / len(per),
                   f"pass@{k}": sum(pass_at_k(n, n - p["invalid"], k) for p in per) / len(per),
                   "jsd_mean": res["jsd_mean"], "seconds": round(time.time() - t0, 1)}
            table_rows.append(row)
            mlflow.log_metrics({f"{m}.{key.replace('@', '_at_')}": v for key, v in row.items() if key != "model"})
            print(f"[repro darling] {m}: quality {row['quality']:.3f} classes {row['classes']:.2f} "
                  f"({row['seconds']} s)", flush=True)
        lines = [f"| model | quality (valid rate) | distinct classes / prompt (of {n}) | pass@{k} | JSD to uniform |",
                 "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['quality']:.3f} | {r['classes']:.2f} | {r[f'pass@{k}']:.3f} | "
                  f"{r['jsd_mean']:.3f} |" for r in table_rows]
        table = "\n".join(lines)
        mlflow.log_text(table, "darling.md")
        mlflow.log_text(json.dumps(table_rows, indent=2), "darling.json")
    saved = _record("repro-darling", cfg, table_rows, samples=n, k=k, partitioner=cfg.train.darling.partitioner)
    return {"table": table, "rows": table_rows, "work_dir": str(work), "models": trained, "result": str(saved)}
