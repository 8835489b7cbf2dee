"""Write an evaluation's JSON, markdown summary and PNGs; log them to MLflow.

:func:`write_outputs` puts ``<suite>.json``, ``<suite>.md`` and the PNGs in a folder (no MLflow).
:func:`log_evaluation` logs the same files as artifacts under ``evaluation/`` plus the headline
metrics (:func:`headline_metrics`) to the active MLflow run, or to a new run in experiment
``divtune-eval`` (tags ``divtune.stage=evaluate``, ``divtune.eval.suite``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPERIMENT = "divtune-eval"
ARTIFACT_DIR = "evaluation"


def _key(s: str) -> str:
    """An MLflow-safe metric-name fragment."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", s)


def headline_metrics(suite: str, result: dict[str, Any]) -> dict[str, float]:
    """The numbers worth a metric: means, per-category/per-prompt values, the curve's points."""
    out: dict[str, float] = {}

    def put(k: str, v: Any) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[_key(k)] = float(v)

    if suite == "open-set":
        for k in ("unique_at_n", "invalid_rate", "answer_tag_rate", "entropy_mean"):
            put(k, result.get(k))
        for cat, u in result.get("unique_at_n_by_category", {}).items():
            put(f"unique_at_n/{cat}", u)
    elif suite == "creative":
        for k in ("pairwise_cosine_distance", "one_minus_self_bleu", "empty_rate"):
            put(k, result.get(k))
        for r in result.get("per_prompt", []):
            put(f"pairwise_cosine_distance/{r['id']}", r.get("pairwise_cosine_distance"))
            put(f"one_minus_self_bleu/{r['id']}", r.get("one_minus_self_bleu"))
        curve = result.get("coherence_curve")
        if curve:
            for p in curve["points"]:
                t = f"t_{p['temperature']:.2f}"
                for k in ("pairwise_cosine_distance", "one_minus_self_bleu", "coherence", "mean_token_logprob",
                          "non_degenerate_rate"):
                    put(f"curve/{t}/{k}", p.get(k))
    else:
        for k, v in result.items():
            put(k, v)
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _md_cell(s: str, width: int = 60) -> str:
    s = " ".join(str(s).split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


def markdown_summary(suite: str, result: dict[str, Any]) -> str:
    """A short markdown report: sampling settings, then one table row per category/prompt."""
    gen = result.get("generator") or {}
    sp = result.get("sampling") or {}
    head = [f"# divtune evaluate {suite}", "",
            f"model: `{gen.get('model') or gen.get('endpoint')}` ({gen.get('backend')}); "
            f"T={sp.get('temperature')}, top_p={sp.get('top_p')}, max_new_tokens={sp.get('max_new_tokens')}, "
            f"seed={sp.get('seed')}, {result.get('samples')} samples per prompt", ""]
    if suite == "open-set":
        n = result["samples"]
        lines = head + [f"**Unique@{n} (mean over {result['num_categories']} categories): "
                        f"{result['unique_at_n']:.2f}**; invalid rate {result['invalid_rate']:.3f}; "
                        f"<answer> format followed {result.get('answer_tag_rate', 0):.3f}", "",
                        f"| category | Unique@{n} | invalid rate | <answer> rate | top answers |", "|---|---|---|---|---|"]
        for r in result["per_category"]:
            top = ", ".join(f"{a} ({c})" for a, c in r["top_answers"][:5])
            lines.append(f"| {r['category']} | {r['unique']} | {r['invalid_rate']:.3f} | "
                         f"{r.get('answer_tag_rate', 0):.3f} | {_md_cell(top, 90)} |")
    elif suite == "creative":
        lines = head + [f"**pairwise cosine distance {_fmt(result['pairwise_cosine_distance'])}, "
                        f"1 − Self-BLEU {_fmt(result['one_minus_self_bleu'])}** (means over prompts); "
                        f"empty rate {result['empty_rate']:.3f}; embedder `{result['embedder'].get('model')}`", "",
                        "| prompt | cosine distance | 1 − Self-BLEU | distinct | mean words | example |",
                        "|---|---|---|---|---|---|"]
        for r in result["per_prompt"]:
            ex = next((c for c in r["completions"] if c.strip()), "")
            lines.append(f"| {_md_cell(r['prompt'], 50)} | {_fmt(r['pairwise_cosine_distance'])} | "
                         f"{_fmt(r['one_minus_self_bleu'])} | {r['distinct']}/{r['n']} | {r['mean_words']:.1f} | "
                         f"{_md_cell(ex)} |")
        curve = result.get("coherence_curve")
        if curve:
            lines += ["", f"## Creativity vs coherence (coherence = `{curve['coherence_metric']}`)", "",
                      "| T | cosine distance | 1 − Self-BLEU | mean token log-lik. | non-degenerate rate |",
                      "|---|---|---|---|---|"]
            for p in curve["points"]:
                lines.append(f"| {p['temperature']:g} | {_fmt(p['pairwise_cosine_distance'])} | "
                             f"{_fmt(p['one_minus_self_bleu'])} | {_fmt(p['mean_token_logprob'])} | "
                             f"{_fmt(p['non_degenerate_rate'])} |")
    elif suite == "lists":
        lines = head + [f"**JSD to uniform (base 2, mean over {result['num_lists']} lists): {result['jsd_mean']:.3f}**; "
                        f"invalid rate {result['invalid_rate']:.3f}; entropy {result['entropy_mean']:.2f} bits", "",
                        "| list | JSD | invalid rate | unique / items | most chosen |", "|---|---|---|---|---|"]
        for r in result["per_list"]:
            top = ", ".join(f"{a} ({c})" for a, c in sorted(r["counts"].items(), key=lambda kv: -kv[1])[:3])
            lines.append(f"| {r['category']} | {r['jsd']:.3f} | {r['invalid_rate']:.3f} | {r['unique']}/{len(r['items'])} "
                         f"| {_md_cell(top, 80)} |")
    else:
        lines = head + ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in headline_metrics(suite, result).items()]
    return "\n".join(lines) + "\n"


def evaluation_markdown(role: str, metrics: dict[str, float], results: dict[str, Any]) -> str:
    """One model's evaluation in the pipeline as Markdown (the KFP UI's report): headline metrics, then each suite."""
    lines = [f"# divtune evaluation: {role}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v, 4)} |" for k, v in metrics.items()]
    parts = ["\n".join(lines) + "\n"]
    for suite, res in results.items():
        if suite == "benchmarks":
            continue
        parts.append(markdown_summary(suite.replace("_", "-"), res).replace("# divtune evaluate", "## suite", 1))
    return "\n".join(parts)


def write_outputs(out_dir: str | os.PathLike, suite: str, result: dict[str, Any], pngs: Sequence[str | os.PathLike],
                  markdown: str) -> list[Path]:
    """Write ``<suite>.json`` and ``<suite>.md`` and copy the PNGs into ``out_dir``; return the paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    js = d / f"{suite}.json"
    js.write_text(json.dumps(result, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    md = d / f"{suite}.md"
    md.write_text(markdown, encoding="utf-8")
    out = [js, md]
    for p in map(Path, pngs):
        target = d / p.name
        if p.resolve() != target.resolve():
            shutil.copyfile(p, target)
        out.append(target)
    return out


def write_report(suite: str, result: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """A suite's figures, ``<suite>.json`` and ``<suite>.md`` written into ``out_dir``; returns the paths."""
    from divtune.evaluate import plots

    pngs = plots.suite_figures(suite, result, out_dir)
    return write_outputs(out_dir, suite, result, pngs, markdown_summary(suite, result))


def log_evaluation(suite: str, result: dict[str, Any], pngs: Sequence[str | os.PathLike], markdown: str, *,
                   experiment: str = EXPERIMENT, run_name: str | None = None) -> str:
    """Log the files and headline metrics to the active run, or a new one in ``experiment``; return its id."""
    import mlflow

    from divtune.registry import tracking

    tracking.setup()
    metrics = headline_metrics(suite, result)
    gen = result.get("generator") or {}
    settings = {"suite": suite, "samples": result.get("samples"), **(result.get("sampling") or {}),
                "model": gen.get("model") or gen.get("endpoint"), "backend": gen.get("backend")}
    active = mlflow.active_run()
    own = active is None
    if own:
        run = mlflow.start_run(experiment_id=tracking.experiment_id(experiment),
                               run_name=run_name or f"evaluate-{suite}",
                               tags={tracking.STAGE_TAG: "evaluate", "divtune.eval.suite": suite})
    else:
        run = active
    try:
        if own:
            mlflow.log_params({k: "" if v is None else str(v)[:6000] for k, v in settings.items()})
        else:  # params of an existing run cannot change: record the settings as tags
            mlflow.set_tags({f"divtune.eval.{suite}.{k}": "" if v is None else str(v)[:5000]
                             for k, v in settings.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory(prefix="divtune-eval-") as tmp:
            for p in write_outputs(tmp, suite, result, pngs, markdown):
                mlflow.log_artifact(str(p), ARTIFACT_DIR)
    except BaseException:
        if own:
            mlflow.end_run("FAILED")
        raise
    if own:
        mlflow.end_run("FINISHED")
    return run.info.run_id
