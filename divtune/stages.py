"""The pipeline's stages as plain functions: one per KFP component, usable from Python and the CLI.

Every stage takes the run's config as YAML text (what a component receives), the pipeline run
key (which finds the MLflow parent run), and local paths for its inputs and outputs; it runs
inside its own MLflow child run and returns a small JSON-able dict.  Nothing here imports KFP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from divtune.config import PipelineConfig, config_from_yaml_text
from divtune.errors import DivtuneError
from divtune.registry import tracking

POINTER = "divtune_pointer.json"


def _cfg(config_yaml: str) -> PipelineConfig:
    return config_from_yaml_text(config_yaml)


def _progress() -> bool:
    return os.environ.get("DIVTUNE_NO_PROGRESS") != "1"


def _write_json(path: str | os.PathLike, data: Any) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, p)
    return p


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".txt", ".jinja", ".model"):
            h.update(p.relative_to(path).as_posix().encode())
            h.update(_file_digest(p).encode())
    return h.hexdigest()[:16]


def model_dir_of(artifact_path: str | os.PathLike) -> Path:
    """The model directory an artifact holds: itself, or the directory its pointer file names."""
    p = Path(artifact_path)
    ptr = p / POINTER
    if ptr.is_file():
        return Path(json.loads(ptr.read_text())["path"])
    return p


# --------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------


def open_run(config_yaml: str, run_key: str) -> str:
    """Create (or find) the MLflow parent run of this pipeline run."""
    cfg = _cfg(config_yaml)
    if not run_key:
        raise DivtuneError("run_key is empty")
    tracking.open_pipeline_run(cfg.registry.experiment, run_key, f"{cfg.name}-{run_key[:12]}",
                               {"preset": cfg.name, "method": cfg.train.method, "model_source": cfg.model.source,
                                "config_fingerprint": cfg.fingerprint(), "registered_model": cfg.registry.model_name},
                               config_yaml)
    return run_key


def _base_cached(cfg) -> bool | None:
    """Whether a project-built base (toy) is already in the content-hash cache; None for other sources."""
    if cfg.model.source != "toy":
        return None
    from divtune.train.toy_model import cache_dir

    return (cache_dir(cfg.model.toy) / "divtune_toy.json").is_file()


def prepare_base(config_yaml: str, run_key: str, out_dir: str) -> dict[str, Any]:
    """Resolve the base model (building the toy, converting SmolLM2, ...) into ``out_dir``.

    Small project-built models are copied in (the artifact is self-contained); a model given by
    path or hub id is referenced by a pointer file instead of copying gigabytes.
    """
    from divtune.train.models import check_model_dir, resolve_base_model

    cfg = _cfg(config_yaml)
    with tracking.stage_run(cfg.registry.experiment, run_key, "prepare_base",
                            {"source": cfg.model.source, "path": cfg.model.path, "hub_id": cfg.model.hub_id}):
        import mlflow

        hit = _base_cached(cfg)
        src = resolve_base_model(cfg.model, progress=_progress())
        print(f"[prepare_base] {cfg.model.source} base model {src} ({'cache hit' if hit else 'built now'})",
              file=sys.stderr, flush=True)
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        if cfg.model.source in ("toy", "smollm2"):
            shutil.copytree(src, out)
        else:
            out.mkdir(parents=True)
            _write_json(out / POINTER, {"path": str(Path(src).resolve())})
        check_model_dir(model_dir_of(out))
        info = {"base_model": str(src), "base_digest": _dir_digest(Path(src)), "base_cache_hit": hit}
        mlflow.log_params(info)
        toy_report = Path(src) / "divtune_toy.json"
        if toy_report.is_file():
            mlflow.log_artifact(str(toy_report))
        return info


def synthesize(config_yaml: str, run_key: str, out_path: str) -> dict[str, Any]:
    """Write the training dataset: synthesized (seeded; byte-identical for the same config), or the
    configured ``data.path`` validated for its task."""
    from divtune.data.dataset import materialize

    cfg = _cfg(config_yaml)
    d = cfg.data
    with tracking.stage_run(cfg.registry.experiment, run_key, "synthesize_data",
                            {"task": d.task, "num_examples": d.num_examples, "seed": d.seed, "path": d.path,
                             "min_len": d.min_len, "max_len": d.max_len, "categories": d.categories}):
        import mlflow

        n = materialize(d, out_path, endpoint_url=cfg.storage.endpoint_url)
        info = {"records": n, "data_digest": _file_digest(Path(out_path))}
        mlflow.log_params(info)
        mlflow.log_artifact(out_path, "data")
        return info


def checkpoint_dir_for(cfg: PipelineConfig, base_dir: Path, data_path: Path) -> Path:
    """Checkpoints are keyed by what determines training (config, base, data): a re-run resumes."""
    from divtune import paths

    key = hashlib.sha256(
        json.dumps({"train": cfg.to_dict()["train"],
                    "prompting": [cfg.data.system_prompt, cfg.data.few_shot], "base": _dir_digest(base_dir), "data": _file_digest(data_path)},
                   sort_keys=True).encode()
    ).hexdigest()[:16]
    return paths.checkpoint_root() / f"{cfg.name}-{cfg.train.method}-{key}"


def train(config_yaml: str, run_key: str, base_path: str, data_path: str, adapter_dir: str) -> dict[str, Any]:
    """Post-train a LoRA adapter with the configured method (GAPO by default)."""
    from divtune.data.dataset import training_rows
    from divtune.registry.tracking import flatten
    from divtune.train import trainer

    cfg = _cfg(config_yaml)
    base = model_dir_of(base_path)
    rows = training_rows(cfg.data.task, data_path)
    ckpt = checkpoint_dir_for(cfg, base, Path(data_path))
    with tracking.stage_run(cfg.registry.experiment, run_key, "train",
                            flatten({"train": cfg.to_dict()["train"]})) as _rid:
        import mlflow

        res = trainer.train(base, rows, cfg.train, adapter_dir, ckpt, trust_remote_code=cfg.model.trust_remote_code,
                            dtype=cfg.model.dtype, system_prompt=cfg.data.system_prompt,
                            few_shot=cfg.data.few_shot)
        info = {"global_step": res.global_step, "resumed_from": res.resumed_from or "", "checkpoint_dir": str(ckpt)}
        mlflow.log_params({"resumed_from": info["resumed_from"] or "none", "checkpoint_dir": str(ckpt)})
        mlflow.log_metrics({f"final_{k}": v for k, v in res.metrics.items()})
        return info


def merge(config_yaml: str, run_key: str, base_path: str, adapter_dir: str, out_dir: str) -> dict[str, Any]:
    """Merge the adapter into the base, check it reloads and generates, log the model to MLflow."""
    from divtune.serve.merge import merge_lora

    cfg = _cfg(config_yaml)
    with tracking.stage_run(cfg.registry.experiment, run_key, "merge_lora") as rid:
        import mlflow

        report = merge_lora(model_dir_of(base_path), adapter_dir, out_dir, dtype=cfg.model.dtype,
                            trust_remote_code=cfg.model.trust_remote_code)
        mlflow.log_params({"parameters": report["parameters"], "reload_check_sample": report["reload_check_sample"][:200]})
        if cfg.storage.models_uri:  # object storage (S3/MinIO): the registered version points there
            from divtune import storage

            model_uri = f"{cfg.storage.models_uri.rstrip('/')}/{cfg.registry.model_name}/{run_key}"
            manifest = storage.upload_dir(out_dir, model_uri, endpoint_url=cfg.storage.endpoint_url)
            mlflow.log_dict(manifest, "model_manifest.json")
        else:  # the MLflow artifact store (local, or whatever the tracking server proxies)
            mlflow.log_artifacts(out_dir, "model")
            model_uri = f"{mlflow.get_run(rid).info.artifact_uri}/model"
        mlflow.set_tag("divtune.model_uri", model_uri)
        return {"model_uri": model_uri, **report}


def eval_fingerprint(cfg: PipelineConfig) -> str:
    """What makes two evaluations comparable: the evaluation settings, sets, seeds and prompting."""
    from divtune.data.lists import heldout_examples

    payload = {"evaluate": dataclasses.asdict(cfg.evaluate), "system_prompt": cfg.data.system_prompt,
               "few_shot": cfg.data.few_shot,
               "lists": [[ex.id, ex.prompt] for ex in heldout_examples(cfg.evaluate.template_id)]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: The gate's names for each suite's headline numbers (``bench.<task>`` come from the benchmarks suite).
SUITE_METRICS = {
    "lists": ("jsd_mean", "invalid_rate", "entropy_mean"),
    "open_set": ("unique_at_n",),
    "creative": ("pairwise_cosine_distance", "one_minus_self_bleu"),
}


def evaluate_model(cfg: PipelineConfig, model_dir: str | os.PathLike) -> tuple[dict[str, float], dict[str, Any]]:
    """The evaluation suites of ``cfg.evaluate.suites`` on one model: ``(headline metrics, results by suite)``.

    Same sets, seeds and sampling settings for every model the gate compares.
    """
    from divtune.evaluate.generation import HFGenerator

    e = cfg.evaluate
    metrics: dict[str, float] = {}
    results: dict[str, Any] = {}
    gen = None
    if any(s in e.suites for s in ("lists", "open_set", "creative")):
        gen = HFGenerator(model_dir, batch_size=e.batch_size, trust_remote_code=cfg.model.trust_remote_code)
    if "lists" in e.suites:
        from divtune.data.lists import heldout_examples
        from divtune.evaluate.lists import evaluate_lists

        results["lists"] = evaluate_lists(gen, heldout_examples(e.template_id), samples=e.samples_per_list,
                                          temperature=e.temperature, max_new_tokens=e.max_new_tokens, seed=e.seed,
                                          system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    if "open_set" in e.suites:
        from divtune.evaluate.open_set import evaluate_open_set

        results["open_set"] = evaluate_open_set(gen, samples=e.open_set_samples, temperature=e.temperature,
                                                max_new_tokens=e.max_new_tokens, seed=e.seed,
                                                system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    if "creative" in e.suites:
        from divtune.evaluate.creative import evaluate_creative

        results["creative"] = evaluate_creative(gen, samples=e.creative_samples, temperature=e.temperature,
                                                max_new_tokens=e.creative_max_new_tokens, seed=e.seed)
    for suite, names in SUITE_METRICS.items():
        for k in names if suite in results else ():
            if results[suite].get(k) is not None:
                metrics[k] = float(results[suite][k])
    if "benchmarks" in e.suites:
        from divtune.evaluate.benchmarks import run_benchmarks

        del gen  # lm-eval loads its own copy of the model
        results["benchmarks"] = run_benchmarks(model=str(model_dir), data=e.benchmarks_data, tasks=e.benchmarks_tasks,
                                               runs=e.benchmarks_runs, allow_code_execution=e.allow_code_execution,
                                               limit=e.benchmarks_limit, seed=e.seed,
                                               trust_remote_code=cfg.model.trust_remote_code)
        metrics.update({k: float(v) for k, v in results["benchmarks"]["metrics"].items() if v is not None})
    return metrics, results


def _log_suite_reports(results: dict[str, Any]) -> None:
    """Each suite's markdown summary, JSON and plots as artifacts of the active (stage) run."""
    import mlflow

    from divtune.evaluate import plots, report

    for suite, res in results.items():
        if suite not in ("open_set", "creative"):
            continue
        name = suite.replace("_", "-")
        with tempfile.TemporaryDirectory(prefix="divtune-eval-") as tmp:
            pngs = plots.suite_figures(name, res, tmp)
            for p in report.write_outputs(tmp, name, res, pngs, report.markdown_summary(name, res)):
                mlflow.log_artifact(str(p), f"evaluation/{name}")


def evaluate(config_yaml: str, run_key: str, model_path: str, role: str, out_json: str) -> dict[str, Any]:
    """The evaluation suite on one model (``role``: ``base`` or ``candidate``)."""
    cfg = _cfg(config_yaml)
    e = cfg.evaluate
    fp = eval_fingerprint(cfg)
    with tracking.stage_run(cfg.registry.experiment, run_key, f"evaluate_{role}",
                            {"samples_per_list": e.samples_per_list, "temperature": e.temperature, "seed": e.seed,
                             "template_id": e.template_id, "role": role, "eval_fingerprint": fp}):
        import mlflow

        metrics, res = evaluate_model(cfg, model_dir_of(model_path))
        mlflow.log_metrics(metrics)
        _log_suite_reports(res)
        _write_json(out_json, {"role": role, "metrics": metrics, "eval_fingerprint": fp, **res})
        mlflow.log_artifact(out_json, "evaluation")
        parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
        tracking.client().log_batch(parent.info.run_id, metrics=[
            _metric(f"{role}_{k}", v) for k, v in metrics.items()])
        return {"role": role, **metrics}


def _metric(key: str, value: float):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def _read_eval(path: str) -> dict[str, float]:
    p = Path(path)
    if not p.is_file():
        raise DivtuneError(f"evaluation file not found: {p} (the candidate has no evaluation)")
    try:
        data = json.loads(p.read_text())
        return {k: float(v) for k, v in data["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DivtuneError(f"evaluation file {p} is malformed") from None


METRIC_TAG = "divtune.metric."


EVAL_FP_TAG = "divtune.eval_fingerprint"


def _champion_reference(cfg: PipelineConfig, name: str, champion: Any) -> tuple[dict[str, float], str]:
    """The champion's metrics on this run's evaluation sets and seeds.

    Its recorded metrics are reused when they were measured with the same evaluation settings
    (same fingerprint); otherwise the champion is fetched from the registry and evaluated again.
    """
    import mlflow

    fp = eval_fingerprint(cfg)
    if champion.tags.get(EVAL_FP_TAG) == fp:
        return ({k[len(METRIC_TAG):]: float(v) for k, v in champion.tags.items() if k.startswith(METRIC_TAG)},
                f"champion v{champion.version}")
    from divtune.registry import models as reg

    print(f"champion v{champion.version} was evaluated with other settings: evaluating it again on this run's "
          "sets and seeds", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="divtune-champion-") as tmp:
        path = reg.download_model_version(f"models:/{name}/{champion.version}", tmp)
        metrics, _ = evaluate_model(cfg, model_dir_of(path))
    mlflow.log_metrics({f"champion_{k}": v for k, v in metrics.items()})
    return metrics, f"champion v{champion.version} (re-evaluated)"


def promote(config_yaml: str, run_key: str, candidate_eval: str, base_eval: str, out_json: str) -> dict[str, Any]:
    """Gate the candidate against the champion (or the base, first time); register; move aliases.

    The version is registered with its decision tags in one call; ``challenger`` always moves to
    it; ``champion`` moves only if every check passed.  Re-running for the same run key reuses the
    version instead of registering a second one.
    """
    from divtune.registry import gate
    from divtune.registry import models as reg

    cfg = _cfg(config_yaml)
    name = cfg.registry.model_name
    policy = gate.load_policy(cfg.gate.policy) if cfg.gate.policy else gate.default_policy(
        cfg.gate.max_invalid_rate, cfg.gate.min_jsd_improvement)
    cand = _read_eval(candidate_eval)
    base = _read_eval(base_eval)
    with tracking.stage_run(cfg.registry.experiment, run_key, "promote",
                            {"model_name": name, "policy": policy.source, "policy_hash": policy.digest()}):
        import mlflow

        merge_run = tracking.find_stage_run(cfg.registry.experiment, run_key, "merge_lora")
        if merge_run is None or "divtune.model_uri" not in merge_run.data.tags:
            raise DivtuneError(f"pipeline run {run_key} has no merged model logged; run merge first")
        source = merge_run.data.tags["divtune.model_uri"]
        existing = reg.version_for_run_key(name, run_key)
        champion = reg.get_alias(name, reg.CHAMPION)
        if existing is not None:
            # a retry of this run's promotion: the decision is already recorded on the version
            decision = gate.decision_from_tags(existing.tags)
            mv = existing
            prev = existing.tags.get(reg.PREVIOUS_CHAMPION_TAG, "")
            reg.set_alias(name, reg.CHALLENGER, mv.version)
            if decision.promote and (champion is None or str(champion.version) == prev):
                reg.set_alias(name, reg.CHAMPION, mv.version)
        else:
            if champion is not None:
                ref, ref_name = _champion_reference(cfg, name, champion)
            else:
                ref, ref_name = base, "base"
            decision = gate.decide(policy, cand, ref, ref_name)
            tags = {**decision.as_tags(),
                    **{f"{METRIC_TAG}{k}": f"{v:.6g}" for k, v in cand.items()},
                    **{f"divtune.base_metric.{k}": f"{v:.6g}" for k, v in base.items()},
                    reg.PREVIOUS_CHAMPION_TAG: str(champion.version) if champion is not None else "",
                    "divtune.config_fingerprint": cfg.fingerprint(), "divtune.method": cfg.train.method,
                    EVAL_FP_TAG: eval_fingerprint(cfg)}
            mv = reg.register_version(name, source, merge_run.info.run_id, run_key, tags,
                                      description=f"{cfg.train.method} candidate from pipeline run {run_key}")
            reg.set_alias(name, reg.CHALLENGER, mv.version)
            if decision.promote:
                reg.set_alias(name, reg.CHAMPION, mv.version)
        current = reg.get_alias(name, reg.CHAMPION)
        summary = {
            "run_key": run_key,
            "registered_model": name,
            "version": str(mv.version),
            "aliases": sorted(a for a, v in ((reg.CHALLENGER, mv.version),
                                             (reg.CHAMPION, current.version if current else None)) if str(v) == str(mv.version)),
            "champion_version": str(current.version) if current else None,
            "decision": decision.to_dict(),
            "base": base,
            "candidate": cand,
            "tracking_uri": tracking.paths.tracking_uri(),
            "ui_command": tracking.ui_command(),
        }
        mlflow.log_dict(decision.to_dict(), "decision.json")
        mlflow.set_tags({"divtune.decision": "promote" if decision.promote else "reject",
                         "divtune.version": str(mv.version)})
        _write_json(out_json, summary)
    parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
    c = tracking.client()
    c.log_dict(parent.info.run_id, summary, "summary.json")
    c.set_tag(parent.info.run_id, "divtune.decision", "promote" if decision.promote else "reject")
    tracking.close_pipeline_run(cfg.registry.experiment, run_key)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    d = s["decision"]
    lines = [
        "",
        "divtune retraining run " + s["run_key"],
        f"  held-out JSD to uniform   base {s['base']['jsd_mean']:.3f}   candidate {s['candidate']['jsd_mean']:.3f}",
        f"  held-out invalid rate     base {s['base']['invalid_rate']:.3f}   candidate {s['candidate']['invalid_rate']:.3f}",
        f"  gate ({'PROMOTE' if d['promote'] else 'REJECT'}, against {d['reference']}):",
        *[f"    [{'pass' if c['passed'] else 'FAIL'}] {c['reason']}" for c in d["checks"]],
        f"  registered: {s['registered_model']} version {s['version']} "
        f"aliases: {', '.join(s['aliases']) or 'none'} (champion is v{s['champion_version']})",
        f"  MLflow store: {s['tracking_uri']}",
        f"  open the UI:  {s['ui_command']}",
    ]
    return "\n".join(lines)
