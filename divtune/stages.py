"""The pipeline's stages as plain functions: one per KFP component, usable from Python and the CLI.

Every stage takes the run's config as YAML text (what a component receives), the pipeline run
key (which finds the MLflow parent run), and local paths for its inputs and outputs; it runs
inside its own MLflow child run and returns a small JSON-able dict.  Nothing here imports KFP.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from divtune.config import PipelineConfig, config_from_yaml_text
from divtune.digests import dir_digest, file_digest
from divtune.errors import DivtuneError
from divtune.models.pointers import model_dir_of, write_pointer
from divtune.registry import tracking


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


# --------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------


def check_cache_volume() -> None:
    """The cache volume (``$DIVTUNE_HOME`` where ``DIVTUNE_SHARED_HOME=1``) is writable by this step's user: a fresh
    PVC is root-owned, and the step images run as uid 1000; refused in the first step, before any work."""
    from divtune import paths

    if os.environ.get("DIVTUNE_SHARED_HOME") != "1":
        return
    home = paths.home()
    if not (home.is_dir() and os.access(home, os.W_OK | os.X_OK)):
        raise DivtuneError(f"the cache volume at {home} is not writable by uid {os.getuid()} (a fresh PVC is "
                           "root-owned): run the prepare Job in manifests/cache-pvc.yaml once")


def open_run(config_yaml: str, run_key: str, compiled_cluster: str = "") -> str:
    """Create (or find) the MLflow parent run of this pipeline run.

    ``compiled_cluster`` is the digest of the ``cluster:`` section the pipeline spec was compiled with (GPUs,
    volumes, Secrets and the TrainJob choice are fixed at compile time); a run whose config carries another
    ``cluster:`` section is refused rather than silently scheduled the old way.
    """
    cfg = _cfg(config_yaml)
    if not run_key:
        raise DivtuneError("run_key is empty")
    check_cache_volume()
    if compiled_cluster and cfg.cluster.fingerprint() != compiled_cluster:
        raise DivtuneError("the run's config has another cluster: section than the one this pipeline was compiled "
                           f"with ({cfg.cluster.fingerprint()} != {compiled_cluster}); compile the spec again "
                           "(divtune compile) instead of changing cluster: in config_yaml")
    tracking.open_pipeline_run(cfg.registry.experiment, run_key, f"{cfg.name}-{run_key[:12]}",
                               {"preset": cfg.name, "method": cfg.train.method, "model_source": cfg.model.source,
                                "config_fingerprint": cfg.fingerprint(), "registered_model": cfg.registry.model_name},
                               config_yaml)
    return run_key


def _on_shared_volume(path: Path) -> bool:
    """Whether ``path`` lies where every step of this run sees it: under ``$DIVTUNE_HOME`` when that is a volume
    all steps mount (``DIVTUNE_SHARED_HOME=1``: pipelines/cluster.py sets it with the cache PVC), or
    anywhere when all steps share one filesystem (``DIVTUNE_SHARED_FS=1``: pipelines/local.py sets it for
    kfp.local's subprocesses, which all run on this machine)."""
    from divtune import paths

    if os.environ.get("DIVTUNE_SHARED_FS") == "1":
        return True
    if os.environ.get("DIVTUNE_SHARED_HOME") != "1":
        return False
    return path.resolve().is_relative_to(paths.home().resolve())


def prepare_base(config_yaml: str, run_key: str, out_dir: str) -> dict[str, Any]:
    """Resolve the base model (building the toy, converting SmolLM2, ...) into ``out_dir``.

    The artifact is what the GPU steps read, so it must hold the model or name it where they can see it: small
    project-built models are copied in; a model given by path or hub id is referenced by a pointer file only when
    it lies on a volume every step mounts (``$DIVTUNE_HOME`` on the cache PVC: ``DIVTUNE_SHARED_HOME=1``, with
    ``HF_HOME`` below it, or a local run where every step shares this machine), and copied in otherwise -- never
    a pointer to a path inside this pod.
    """
    from divtune.models.checks import check_model_dir
    from divtune.models.resolve import base_cached, resolve_base_model

    cfg = _cfg(config_yaml)
    with tracking.stage_run(cfg.registry.experiment, run_key, "prepare_base",
                            {"source": cfg.model.source, "path": cfg.model.path, "hub_id": cfg.model.hub_id}):
        import mlflow

        hit = base_cached(cfg.model)
        src = resolve_base_model(cfg.model, progress=_progress())
        print(f"[prepare_base] {cfg.model.source} base model {src} ({'cache hit' if hit else 'built now'})",
              file=sys.stderr, flush=True)
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        if cfg.model.source not in ("toy", "smollm2") and _on_shared_volume(Path(src)):
            write_pointer(out, src)
        else:
            shutil.copytree(src, out)  # (a hub snapshot's symlinks into its blob store are copied as files)
        check_model_dir(model_dir_of(out))
        info = {"base_model": str(src), "base_digest": dir_digest(Path(src)), "base_cache_hit": hit}
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
        info = {"records": n, "data_digest": file_digest(Path(out_path))}
        mlflow.log_params(info)
        mlflow.log_artifact(out_path, "data")
        return info


def checkpoint_dir_for(cfg: PipelineConfig, base_dir: Path, data_path: Path) -> Path:
    """Checkpoints are keyed by what determines training (config, base, data): a re-run resumes."""
    from divtune import paths

    key = hashlib.sha256(
        json.dumps({"train": cfg.to_dict()["train"],
                    "prompting": [cfg.data.system_prompt, cfg.data.few_shot], "base": dir_digest(base_dir), "data": file_digest(data_path)},
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
    """Merge the adapter into the base, check it reloads and generates, log the model to MLflow.

    With ``storage.models_uri`` the merged weights go to object storage only (built in the cache first), and the
    ``out_dir`` artifact is a pointer to their ``s3://`` URI: the KFP artifact store (often a 10-20 GiB volume)
    never holds a second copy of a 15-65 GB model."""
    import tempfile

    from divtune import paths
    from divtune.models.merge import merge_lora
    from divtune.models.pointers import write_remote_pointer

    cfg = _cfg(config_yaml)
    with tracking.stage_run(cfg.registry.experiment, run_key, "merge_lora") as rid:
        import mlflow

        remote = bool(cfg.storage.models_uri)
        if remote:
            (paths.home() / "tmp").mkdir(parents=True, exist_ok=True)
            build = Path(tempfile.mkdtemp(prefix="merged-", dir=paths.home() / "tmp")) / "model"
        else:
            build = Path(out_dir)
        try:
            report = merge_lora(model_dir_of(base_path), adapter_dir, build, dtype=cfg.model.dtype,
                                trust_remote_code=cfg.model.trust_remote_code)
            mlflow.log_params({"parameters": report["parameters"],
                               "reload_check_sample": report["reload_check_sample"][:200]})
            if remote:  # object storage (S3/MinIO): the registered version points there
                from divtune import storage

                model_uri = f"{cfg.storage.models_uri.rstrip('/')}/{cfg.registry.model_name}/{run_key}"
                manifest = storage.upload_dir(build, model_uri, endpoint_url=cfg.storage.endpoint_url)
                mlflow.log_dict(manifest, "model_manifest.json")
                if Path(out_dir).exists():
                    shutil.rmtree(out_dir)
                write_remote_pointer(out_dir, model_uri, cfg.storage.endpoint_url)
        finally:
            if remote:
                shutil.rmtree(build.parent, ignore_errors=True)
        if not remote:  # the MLflow artifact store (local, or whatever the tracking server proxies)
            mlflow.log_artifacts(out_dir, "model")
            model_uri = f"{mlflow.get_run(rid).info.artifact_uri}/model"
        mlflow.set_tag("divtune.model_uri", model_uri)
        return {"model_uri": model_uri, **report}


def evaluate(config_yaml: str, run_key: str, model_path: str, role: str, out_json: str,
             report_md: str | None = None) -> dict[str, Any]:
    """The evaluation suites on one model (``role``: ``base`` or ``candidate``); ``report_md``: also a Markdown
    report there (the KFP UI shows it)."""
    from divtune.evaluate import report, suites

    cfg = _cfg(config_yaml)
    e = cfg.evaluate
    fp = suites.eval_fingerprint(cfg)
    with tracking.stage_run(cfg.registry.experiment, run_key, f"evaluate_{role}",
                            {"samples_per_list": e.samples_per_list, "temperature": e.temperature, "seed": e.seed,
                             "template_id": e.template_id, "role": role, "eval_fingerprint": fp}):
        import mlflow

        metrics, res = suites.evaluate_model(cfg, model_dir_of(model_path))
        mlflow.log_metrics(metrics)
        _log_suite_reports(res)
        _write_json(out_json, {"role": role, "metrics": metrics, "eval_fingerprint": fp, **res})
        mlflow.log_artifact(out_json, "evaluation")
        if report_md:
            Path(report_md).parent.mkdir(parents=True, exist_ok=True)
            Path(report_md).write_text(report.evaluation_markdown(role, metrics, res), encoding="utf-8")
        parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
        tracking.client().log_batch(parent.info.run_id, metrics=[
            _metric(f"{role}_{k}", v) for k, v in metrics.items()])
        return {"role": role, **metrics}


def _metric(key: str, value: float):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def _log_suite_reports(results: dict[str, Any]) -> None:
    """Each open-set / creative suite's markdown summary, JSON and plots as artifacts of the active (stage) run."""
    import tempfile

    import mlflow

    from divtune.evaluate import report

    for suite, res in results.items():
        if suite not in ("open_set", "creative"):
            continue
        name = suite.replace("_", "-")
        with tempfile.TemporaryDirectory(prefix="divtune-eval-") as tmp:
            for p in report.write_report(name, res, tmp):
                mlflow.log_artifact(str(p), f"evaluation/{name}")


def _read_eval(path: str) -> dict[str, float]:
    p = Path(path)
    if not p.is_file():
        raise DivtuneError(f"evaluation file not found: {p} (the candidate has no evaluation)")
    try:
        data = json.loads(p.read_text())
        return {k: float(v) for k, v in data["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise DivtuneError(f"evaluation file {p} is malformed") from None


def promote(config_yaml: str, run_key: str, candidate_eval: str, base_eval: str, out_json: str) -> dict[str, Any]:
    """Gate the candidate against the champion (or the base, first time), register it, move the aliases
    (:mod:`divtune.promotion.promote`), and close the pipeline's MLflow parent run with the summary."""
    from divtune.promotion import promote as promotion

    cfg = _cfg(config_yaml)
    name = cfg.registry.model_name
    policy = promotion.policy_for(cfg)
    cand, base = _read_eval(candidate_eval), _read_eval(base_eval)
    with tracking.stage_run(cfg.registry.experiment, run_key, "promote",
                            {"model_name": name, "policy": policy.source, "policy_hash": policy.digest()}):
        import mlflow

        merge_run = tracking.find_stage_run(cfg.registry.experiment, run_key, "merge_lora")
        if merge_run is None or "divtune.model_uri" not in merge_run.data.tags:
            raise DivtuneError(f"pipeline run {run_key} has no merged model logged; run merge first")
        mv, decision, reevaluated = promotion.promote(cfg, run_key, merge_run.data.tags["divtune.model_uri"],
                                                      merge_run.info.run_id, cand, base, policy)
        if reevaluated:
            mlflow.log_metrics({f"champion_{k}": v for k, v in reevaluated.items()})
        summary = promotion.summary(run_key, name, mv, decision, cand, base)
        mlflow.log_dict(decision.to_dict(), "decision.json")
        mlflow.set_tags({promotion.DECISION_TAG: "promote" if decision.promote else "reject",
                         promotion.VERSION_TAG: str(mv.version)})
        _write_json(out_json, summary)
    parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
    c = tracking.client()
    c.log_dict(parent.info.run_id, summary, "summary.json")
    c.set_tag(parent.info.run_id, promotion.DECISION_TAG, "promote" if decision.promote else "reject")
    tracking.close_pipeline_run(cfg.registry.experiment, run_key)
    return summary


def deploy(config_yaml: str, run_key: str, decision_json: str, out_manifest: str) -> dict[str, Any]:
    """After a promotion (the DAG runs this only when promote's decision is ``promote``): the version promote
    registered, served.  Its KServe InferenceService is rendered from its registered source and written to
    ``out_manifest`` (the step's artifact, and the MLflow parent run's ``deploy/inferenceservice.yaml``); it is
    applied (:func:`divtune.serve.deploy.deploy`: server-side apply, the optional canary) only with
    ``deploy.enabled`` and Kubernetes credentials at hand.  Not enabled, a version KServe cannot read (a local
    artifact store) is recorded as ``not-rendered`` with the reason; enabled, it is an error."""
    import yaml

    from divtune.serve import deploy as dep

    cfg = _cfg(config_yaml)
    d = cfg.deploy
    try:
        summary = json.loads(Path(decision_json).read_text(encoding="utf-8"))
        uri = f"models:/{summary['registered_model']}/{summary['version']}"
    except (OSError, ValueError, KeyError, TypeError):
        raise DivtuneError(f"promotion summary {decision_json} is missing or malformed; run promote first") from None
    info: dict[str, Any] = {"model_uri": uri, "version": str(summary["version"]), "enabled": d.enabled,
                            "canary_percent": d.canary_percent}
    from divtune.outputs import write_text

    out = Path(out_manifest)
    try:
        isvc = dep.render(uri, name=d.isvc_name, namespace=d.namespace, canary_percent=d.canary_percent)
    except DivtuneError as exc:
        if d.enabled:
            raise
        info.update(status="not-rendered", reason=str(exc))
        write_text(out, f"# {uri}: not rendered: {exc}\n")
    else:
        meta = isvc["metadata"]
        info.update(inferenceservice=f"{meta['namespace']}/{meta['name']}",
                    storage_uri=isvc["spec"]["predictor"]["model"]["storageUri"])
        write_text(out, yaml.safe_dump(isvc, sort_keys=False))
        if not d.enabled:
            info.update(status="rendered", reason="deploy.enabled is false")
        elif not dep.has_kube_credentials():
            info.update(status="rendered", reason="no Kubernetes credentials (kubeconfig or service account)")
        else:
            info.update(dep.deploy(uri, name=d.isvc_name, namespace=d.namespace, canary_percent=d.canary_percent,
                                   max_invalid_rate=d.max_invalid_rate))
            info["status"] = "applied"
    parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
    if parent is not None:  # promote closed it; its record gets the manifest and the outcome
        c = tracking.client()
        c.log_text(parent.info.run_id, out.read_text(encoding="utf-8"), "deploy/inferenceservice.yaml")
        c.set_tag(parent.info.run_id, "divtune.deploy", info["status"])
    print(f"[deploy] {uri}: {info['status']}" + (f" ({info['reason']})" if info.get("reason") else ""),
          file=sys.stderr)
    return info


def close_run(config_yaml: str, run_key: str, state: str, error: str = "") -> str:
    """The pipeline's exit handler: a run whose steps did not all succeed leaves its MLflow parent run FAILED
    (with the final state and the error as tags), not RUNNING; a succeeded run was closed by promote."""
    cfg = _cfg(config_yaml)
    if state != "SUCCEEDED":
        parent = tracking.find_pipeline_run(cfg.registry.experiment, run_key)
        if parent is not None:
            c = tracking.client()
            c.set_tag(parent.info.run_id, "divtune.final_state", state)
            if error:
                c.set_tag(parent.info.run_id, "divtune.error", error[:500])
        tracking.close_pipeline_run(cfg.registry.experiment, run_key, "FAILED")
        # a step that was killed (OOM, node loss, SIGKILL) ran no handler of its own: its stage run is still RUNNING
        dangling = tracking.fail_running_stage_runs(cfg.registry.experiment, run_key)
        print(f"[close_run] pipeline run {run_key} ended {state}: MLflow parent run marked FAILED"
              + (f", and the stage runs left RUNNING by a killed step ({', '.join(dangling)})" if dangling else ""),
              file=sys.stderr)
    return state
