"""Reproductions: the GAPO paper's uniformity comparison (Table 8 / Figure 4 shape) on any preset.

``uniformity`` trains every method from the same base on the same synthesized data, merges each
adapter, samples the held-out lists with the same seeds and prints one markdown row per model:
JSD to uniform (lower is better), invalid rate, and unique answers per list.  Everything is
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


METHODS = ("base", "sft", "grpo", "gapo")


def parse_methods(text: str) -> tuple[str, ...]:
    """``--methods base,grpo,...``: known method names, in the order given, or one line."""
    from divtune.errors import DivtuneError

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise DivtuneError(f"--methods: unknown method {bad[0] if bad else '(none)'!r} (use {', '.join(METHODS)})")
    return methods


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | JS to uniform (↓) | invalid rate | unique answers / list (↑) | list size |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['jsd_mean']:.3f} | {r['invalid_rate']:.3f} | "
                     f"{r['unique_mean']:.2f} | {r['list_size']:.0f} |")
    return "\n".join(lines)


def uniformity(cfg: PipelineConfig, methods: tuple[str, ...] = ("base", "sft", "grpo", "gapo"), *,
               samples: int | None = None, work_dir: str | None = None) -> dict[str, Any]:
    import mlflow

    from divtune.evaluate import plots, suites
    from divtune.evaluate.generation import HFGenerator
    from divtune.registry import tracking

    e = cfg.evaluate
    n = samples or e.samples_per_list
    base, rows, work = _prepare(cfg, work_dir, "divtune-repro-")
    exp = tracking.experiment_id(cfg.registry.experiment)
    results: dict[str, dict[str, Any]] = {}
    trained: dict[str, str] = {}  # method -> its merged model directory
    table_rows = []
    with mlflow.start_run(experiment_id=exp, run_name=f"repro-uniformity-{cfg.name}",
                          tags={"divtune.stage": "repro-uniformity"}):
        mlflow.log_params({"preset": cfg.name, "methods": ",".join(methods), "samples_per_list": n,
                           "max_steps": cfg.train.max_steps, "num_generations": cfg.train.num_generations})
        for m in methods:
            t0 = time.time()
            model_dir = _model_for(cfg, m, base, rows, work, trained)
            res = suites.run_lists(HFGenerator(model_dir, batch_size=e.batch_size), cfg, samples=n)
            row = {"model": m, "jsd_mean": res["jsd_mean"], "invalid_rate": res["invalid_rate"],
                   "unique_mean": sum(p["unique"] for p in res["per_list"]) / len(res["per_list"]),
                   "list_size": sum(len(p["items"]) for p in res["per_list"]) / len(res["per_list"]),
                   "seconds": round(time.time() - t0, 1)}
            results[m] = res
            table_rows.append(row)
            mlflow.log_metrics({f"{m}.jsd_mean": row["jsd_mean"], f"{m}.invalid_rate": row["invalid_rate"],
                                f"{m}.unique_mean": row["unique_mean"]})
            print(f"[repro] {m}: JSD {row['jsd_mean']:.3f} invalid {row['invalid_rate']:.3f} ({row['seconds']} s)",
                  flush=True)
        table = markdown_table(table_rows)
        mlflow.log_text(table, "uniformity.md")
        mlflow.log_text(json.dumps({"rows": table_rows, "results": results}, indent=2, default=str), "uniformity.json")
        chart = plots.answer_distributions_chart(results, work / "answer_distributions.png")
        mlflow.log_artifact(str(chart))
    saved = _record("repro-uniformity", cfg, table_rows, samples=n, methods=list(methods))
    return {"table": table, "rows": table_rows, "work_dir": str(work), "models": trained, "result": str(saved)}


def darling(cfg: PipelineConfig, *, samples: int | None = None, k: int = 4,
            work_dir: str | None = None) -> dict[str, Any]:
    """Quality-only GRPO vs DARLING from the same base: quality, distinct classes per prompt, pass@k.

    On list selection the quality is validity and an equivalence class is a distinct listed answer.
    Both methods use ``cfg.train`` (DARLING's settings: no std scaling, token-level loss); only the
    reward differs.
    """
    import mlflow

    from divtune.answers.metrics import pass_at_k
    from divtune.evaluate import suites
    from divtune.evaluate.generation import HFGenerator
    from divtune.registry import tracking

    e = cfg.evaluate
    n = samples or e.samples_per_list
    base, rows, work = _prepare(cfg, work_dir, "divtune-repro-darling-")
    table_rows = []
    trained: dict[str, str] = {}  # method -> its merged model directory
    with mlflow.start_run(experiment_id=tracking.experiment_id(cfg.registry.experiment),
                          run_name=f"repro-darling-{cfg.name}", tags={"divtune.stage": "repro-darling"}):
        mlflow.log_params({"preset": cfg.name, "samples_per_list": n, "k": k, "max_steps": cfg.train.max_steps,
                           "partitioner": cfg.train.darling.partitioner})
        for m in ("base", "grpo", "darling"):
            t0 = time.time()
            model_dir = _model_for(cfg, m, base, rows, work, trained)
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
