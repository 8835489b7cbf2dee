"""The session's one finished whole-DAG run (conftest ``toy_dag``: ``divtune run`` on the toy with support.DAG_CONFIG)
and every test that reads it, in one module so that one worker builds it (make test: ``-n 2 --dist loadfile``):

* every stage ran for real; MLflow, the registry and S3 hold what the run says; a retried promotion and a cached
  re-run register nothing twice and train, merge and evaluate nothing again
* secrets in every stage's environment reach no param, tag, artifact, store byte or uploaded object
* the same command SIGKILLed mid-training and run again resumes from the last complete checkpoint and trains
  exactly what the uninterrupted run trained
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import (DAG_BUCKET, DAG_EXPERIMENT, DAG_MODEL, REPO, SECRETS, dag_env, env_vars, home_sharing_models,
                     read_json, run_cli, tensor_digests, write_dag_config)


# --------------------------------------------------------------------------------------
# the whole pipeline
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_whole_pipeline_on_the_toy(toy_dag):
    """Every stage ran for real on the toy (the session's finished `divtune run`, support.DAG_CONFIG): MLflow
    holds the parent + child runs, the registered version carries the gate's decision on the run's own metrics
    and points at the merged model in S3; retrying the promotion and re-running the pipeline with KFP caching
    (the fixture's second run) register nothing twice and train, merge and evaluate nothing again."""
    from divtune import stages
    from divtune.config import load_config as load
    from divtune.promotion import gate
    from divtune.promotion.promote import policy_for
    from divtune.registry import models as reg
    from divtune.registry import tracking

    assert f"registered: {DAG_MODEL} version 1" in toy_dag.first.stdout, toy_dag.first.stdout[-2000:]
    cfg = load(path=toy_dag.config)
    with toy_dag.store():
        c = tracking.client()
        parent = tracking.find_pipeline_run(DAG_EXPERIMENT, toy_dag.key)
        assert parent.info.status == "FINISHED"
        children = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        stages_run = [r.data.tags["divtune.stage"] for r in children]
        assert set(stages_run) == {"prepare_base", "synthesize_data", "train", "merge_lora", "evaluate_base",
                                   "evaluate_candidate", "promote"}
        assert all(r.info.status == "FINISHED" for r in children)
        # the cached re-run: every cacheable step reused (one child run each), promotion ran again
        for s in ("train", "merge_lora", "evaluate_candidate", "evaluate_base", "synthesize_data"):
            assert stages_run.count(s) == 1, stages_run
        assert stages_run.count("promote") == 2, stages_run
        train_run = next(r for r in children if r.data.tags["divtune.stage"] == "train")
        assert train_run.data.params["train.method"] == "gapo"
        hist = c.get_metric_history(train_run.info.run_id, "diversity/group_jsd")
        assert sorted(m.step for m in hist) == list(range(1, cfg.train.max_steps + 1)), "live diversity metrics"
        summary = json.loads(Path(c.download_artifacts(parent.info.run_id, "summary.json")).read_text())
        for role in ("base", "candidate"):
            for k in ("jsd_mean", "invalid_rate"):
                assert parent.data.metrics[f"{role}_{k}"] == pytest.approx(summary[role][k])
        [mv] = c.search_model_versions(f"name = '{DAG_MODEL}'")
        # the version carries the gate's decision on this run's metrics (no champion yet: against the base)
        decision = gate.decide(policy_for(cfg), summary["candidate"], summary["base"], "base")
        assert gate.decision_from_tags(mv.tags).promote == decision.promote == summary["decision"]["promote"]
        assert mv.tags["divtune.decision"] == ("promote" if decision.promote else "reject")
        assert reg.get_alias(DAG_MODEL, "challenger").version == mv.version
        champion = reg.get_alias(DAG_MODEL, "champion")
        assert (champion is not None and champion.version == mv.version) == decision.promote
        # the registered version points at the merged model in object storage; its files are a safetensors model
        assert mv.source == f"s3://{DAG_BUCKET}/m/{DAG_MODEL}/{toy_dag.key}"
        files = {p.name for p in reg.download_model_version(f"models:/{DAG_MODEL}@challenger").iterdir()}
        assert "model.safetensors" in files and "tokenizer.json" in files and not any(f.endswith(".bin") for f in files)
        # retrying promotion of the same pipeline run registers nothing new
        root = toy_dag.home / "retry"
        root.mkdir(exist_ok=True)
        cand, base = root / "c.json", root / "b.json"
        cand.write_text(json.dumps({"metrics": summary["candidate"]}))
        base.write_text(json.dumps({"metrics": summary["base"]}))
        stages.open_run(cfg.to_yaml(), toy_dag.key)
        again = stages.promote(cfg.to_yaml(), toy_dag.key, str(cand), str(base), str(root / "s.json"))
        assert again["version"] == str(mv.version)
        assert len(c.search_model_versions(f"name = '{DAG_MODEL}'")) == 1


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _scan_for_secrets(roots: list[Path], secrets: dict[str, str]) -> list[str]:
    """Every file under ``roots`` (the SQLite store itself, MLflow artifacts, kfp outputs), bytes-wise."""
    hits = []
    needles = {k: v.encode() for k, v in secrets.items()}
    for root in roots:
        for p in [root] if root.is_file() else root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                hits += [f"{k} in {p}" for k, v in needles.items() if v in data]
    return hits


def _all_logged_text(client, experiment_ids: list[str], model_names: list[str]) -> str:
    """Params, tags, metrics keys and every text artifact of every run, and every registered version's tags."""
    chunks = []
    for run in client.search_runs(experiment_ids, max_results=1000):
        chunks.append(json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)]))
        stack = [a for a in client.list_artifacts(run.info.run_id)]
        while stack:
            a = stack.pop()
            if a.is_dir:
                stack += client.list_artifacts(run.info.run_id, a.path)
            elif a.path.endswith((".json", ".yaml", ".yml", ".txt", ".jsonl", ".md", ".jinja")):
                chunks.append(Path(client.download_artifacts(run.info.run_id, a.path)).read_text(errors="replace"))
    for name in model_names:
        for v in client.search_model_versions(f"name = '{name}'"):
            chunks.append(json.dumps([dict(v.tags), v.description, v.source]))
    return "\n".join(chunks)


def _trained(log_history: list[dict]) -> list[dict]:
    """What training computed at each logged step (loss, rewards, diversity, grad norm, ...): every entry
    without the wall-clock figures (times, throughput), which differ between any two runs."""
    clock = ("time", "runtime", "per_second")
    return [{k: v for k, v in e.items() if not any(c in k for c in clock)} for e in log_history]


# --------------------------------------------------------------------------------------
# training killed mid-run
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pipeline_killed_mid_training_resumes_from_checkpoint(tmp_path, divtune_home, toy_dag, s3_endpoint):
    """`divtune run` SIGKILLed (the whole process group: kfp.local and the train step) once checkpoint-2 is
    on disk; the same command again resumes training at step 2 (prepare/synthesize come from the KFP cache),
    registers one version, and trains exactly what the session's uninterrupted run of the same config trained:
    the same log history step by step, the same adapter tensors, the same held-out metrics."""
    from divtune.registry import tracking

    home = home_sharing_models(tmp_path, Path(divtune_home))
    cfg_file = write_dag_config(tmp_path / "dag.yaml")
    env = dag_env(home, s3_endpoint)
    cmd = ["run", "--config", str(cfg_file), "--run-key", "killed-1", "--cache"]

    # 1. killed once checkpoint-2 is complete (trainer_state.json is written last)
    log = open(tmp_path / "run1.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "divtune.cli", *cmd], cwd=REPO, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 900
    try:
        while not list(home.glob("checkpoints/*/checkpoint-2/trainer_state.json")):
            assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint-2 within 15 minutes"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    ckpt_root = next(home.glob("checkpoints/*/checkpoint-2")).parent
    assert not (ckpt_root / "checkpoint-4").exists()

    # 2. the same command again: resumes at step 2, completes, registers once
    res = run_cli(*cmd, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert f"registered: {DAG_MODEL} version 1" in res.stdout

    with env_vars(DIVTUNE_HOME=str(home), MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"]):
        c = tracking.client()
        parent = tracking.find_pipeline_run(DAG_EXPERIMENT, "killed-1")
        assert parent.info.status == "FINISHED"
        children = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        by_stage: dict[str, list] = {}
        for r in children:
            by_stage.setdefault(r.data.tags["divtune.stage"], []).append(r)
        # prepare_base / synthesize_data finished before the kill: the re-run took them from the KFP cache
        seen = {s: [(r.info.status, r.info.start_time) for r in rs] for s, rs in by_stage.items()}
        cache = sorted(p.name for p in (home / "kfp-local" / ".kfp_cache").glob("*"))
        assert len(by_stage["prepare_base"]) == 1 and len(by_stage["synthesize_data"]) == 1, (seen, cache)
        trains = sorted(by_stage["train"], key=lambda r: r.info.start_time)
        assert len(trains) == 2 and trains[0].info.status == "RUNNING"  # the killed one never ended
        resumed = trains[1]
        assert resumed.info.status == "FINISHED"
        assert resumed.data.params["resumed_from"].endswith("checkpoint-2")
        steps = {m.step for k in resumed.data.metrics if not k.startswith("final_")
                 for m in c.get_metric_history(resumed.info.run_id, k)}
        assert steps and min(steps) >= 3 and max(steps) == 4, steps  # steps 1-2 were not trained again
        versions = c.search_model_versions(f"name = '{DAG_MODEL}'")
        assert len(versions) == 1
        assert c.get_model_version_by_alias(DAG_MODEL, "challenger").version == versions[0].version
        resumed_metrics = {k: v for k, v in parent.data.metrics.items() if k.startswith(("candidate_", "base_"))}
    assert _scan_for_secrets([home / "mlflow.db", home / "mlartifacts", home / "kfp-local"], SECRETS) == []

    # 3. what was trained is what the uninterrupted run (same config, same base, same data) trained
    resumed_state = read_json(ckpt_root / "checkpoint-4" / "trainer_state.json")
    straight_state = read_json(toy_dag.checkpoint(4) / "trainer_state.json")
    assert resumed_state["global_step"] == straight_state["global_step"] == 4
    assert [e["step"] for e in resumed_state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    assert _trained(resumed_state["log_history"]) == _trained(straight_state["log_history"])
    assert tensor_digests(ckpt_root / "checkpoint-4" / "adapter_model.safetensors") == \
        tensor_digests(toy_dag.checkpoint(4) / "adapter_model.safetensors")
    with toy_dag.store():
        straight = tracking.find_pipeline_run(DAG_EXPERIMENT, toy_dag.key).data.metrics
    assert resumed_metrics and resumed_metrics == {k: straight[k] for k in resumed_metrics}


# --------------------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------------------


def test_secrets_reach_no_param_tag_artifact_store_byte_or_object(toy_dag):
    """The finished DAG ran with secrets in every stage's environment (as pods get them from Secrets): none
    is in a param, tag, text artifact or version tag, in any byte of the MLflow store, the artifacts or the
    kfp outputs, or in any object uploaded to the models bucket; the Secret *references* are there."""
    import boto3

    from divtune.registry import tracking

    with toy_dag.store():
        c = tracking.client()
        parent = tracking.find_pipeline_run(DAG_EXPERIMENT, toy_dag.key)
        blob = _all_logged_text(c, [parent.info.experiment_id], [DAG_MODEL])
    assert "divtune-s3" in blob  # the Secret reference is logged (config.yaml) ...
    for k, v in SECRETS.items():
        assert v not in blob, f"{k} was logged"  # ... its value is not
    home = toy_dag.home
    assert _scan_for_secrets([home / "mlflow.db", home / "mlartifacts", home / "kfp-local"], SECRETS) == []
    s3 = boto3.client("s3", endpoint_url=toy_dag.env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=DAG_BUCKET, Prefix=f"m/{DAG_MODEL}/{toy_dag.key}/")["Contents"]]
    assert any(k.endswith("model.safetensors") for k in keys), keys
    for key in keys:
        body = s3.get_object(Bucket=DAG_BUCKET, Key=key)["Body"].read()
        assert not [k for k, v in SECRETS.items() if v.encode() in body], key
