"""The KFP side: compile round-trip, one component through kfp.local, and the whole DAG on the toy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from divtune.config import load_config, load_images

STAGES = {"open-run", "prepare-base", "synthesize-data", "train", "merge-lora", "evaluate", "evaluate-2", "promote"}


def test_compile_round_trip(tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from conftest import run_cli

    out = tmp_path / "retrain.yaml"
    res = run_cli("compile", "--preset", "toy", "-o", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1  # the toy asks for no Kubernetes settings
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "divtune-retrain"
    tasks = set(spec.root.dag.tasks)
    assert tasks == STAGES, tasks
    # every executor runs in an image from configs/images.yaml and does not pip-install kfp
    images = load_images()
    allowed = {images.ref("trainer"), images.ref("evaluator")}
    for name, ex in spec.deployment_spec["executors"].items():
        assert ex["container"]["image"] in allowed, name
        assert "pip install" not in " ".join(ex["container"]["command"]), name
    # the config travels as the default of the config_yaml parameter and parses back
    default = spec.root.input_definitions.parameters["config_yaml"].default_value.string_value
    from divtune.config import config_from_yaml_text

    assert config_from_yaml_text(default) == load_config("toy")
    # DAG edges: train consumes the base model and the data; promote consumes both evaluations
    train = spec.root.dag.tasks["train"]
    assert set(train.inputs.artifacts) == {"base_model", "data"}
    assert set(spec.root.dag.tasks["promote"].inputs.artifacts) == {"candidate_eval", "base_eval"}


def test_compiled_spec_carries_kubernetes_settings(tmp_path):
    """GPU preset: accelerators on train/evaluate, tolerations + node selector on GPU steps, the cache PVC and
    Secret references (never values) on every step, tracking env; parsed back with kfp's proto types."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from divtune_kfp.pipelines.local import compile_pipeline

    cfg = load_config("qwen2.5-7b-gapo")
    out = compile_pipeline(cfg, tmp_path / "gpu.yaml")
    spec_doc, platform_doc = yaml.safe_load_all(out.read_text())
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    execs = spec_doc["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-evaluate", "exec-evaluate-2"):
        acc = execs[name]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and int(acc["resourceCount"]) >= 1, name
    assert "accelerator" not in execs["exec-promote"]["container"].get("resources", {})
    k8s = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert "tolerations" not in k8s["exec-promote"]
    for name, ex in k8s.items():
        assert ex["pvcMount"][0]["mountPath"] == "/mnt/divtune", name
        assert ex["secretAsEnv"][0]["secretName"] == "divtune-s3", name
    env = {e["name"]: e["value"] for e in execs["exec-train"]["container"]["env"]}
    assert env["DIVTUNE_HOME"] == "/mnt/divtune" and env["MLFLOW_TRACKING_URI"].startswith("http://")
    assert spec.pipeline_info.name == "divtune-retrain"


def test_synthesize_component_through_kfp_local(tmp_path):
    from kfp import local

    from divtune_kfp.components.synthesize_data import synthesize_data
    from divtune import stages
    from divtune.data.lists import read_jsonl
    from divtune.registry import tracking

    cfg = load_config("toy", overrides=["data.num_examples=25", "data.seed=3"])
    key = "component-test"
    stages.open_run(cfg.to_yaml(), key)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = synthesize_data(config_yaml=cfg.to_yaml(), run_key=key)
    data = task.outputs["data"]
    records = read_jsonl(data.path)
    assert len(records) == 25 and data.metadata["records"] == 25
    run = tracking.find_stage_run(cfg.registry.experiment, key, "synthesize_data")
    assert run is not None and run.info.status == "FINISHED"
    assert run.data.params["num_examples"] == "25"


@pytest.mark.slow
def test_whole_pipeline_on_the_toy(divtune_home, toy_model_dir, monkeypatch, aws_env):
    """Every stage runs for real on the toy (few steps); MLflow holds the parent + child runs and
    the registered version carries its decision; re-running promotion registers nothing twice."""
    from divtune import stages
    from divtune.registry import models as reg
    from divtune.registry import tracking
    from divtune_kfp.pipelines.local import run_local

    cfg = load_config("toy", overrides=[
        "train.max_steps=3", "train.save_steps=2", "data.num_examples=40", "evaluate.samples_per_list=20",
        "registry.model_name=smoke-model", "registry.experiment=smoke", "storage.models_uri=s3://smoke-models/m"])
    from divtune import storage

    storage.client().create_bucket(Bucket="smoke-models")
    secrets = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-9f1c", "MLFLOW_TRACKING_PASSWORD": "s3cr3t-mlflow-77ab",
               "HF_TOKEN": "hf_s3cr3t0000"}
    for k, v in secrets.items():  # every stage process inherits these, as pods get them from Secrets
        monkeypatch.setenv(k, v)
    key = run_local(cfg, "smoke-run-1", enable_caching=True)
    c = tracking.client()
    parent = tracking.find_pipeline_run("smoke", key)
    assert parent.info.status == "FINISHED"
    children = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {r.data.tags["divtune.stage"] for r in children} == {
        "prepare_base", "synthesize_data", "train", "merge_lora", "evaluate_base", "evaluate_candidate", "promote"}
    assert all(r.info.status == "FINISHED" for r in children)
    train_run = next(r for r in children if r.data.tags["divtune.stage"] == "train")
    assert train_run.data.params["train.method"] == "gapo"
    hist = c.get_metric_history(train_run.info.run_id, "diversity/group_jsd")
    assert hist, "live diversity metrics must be logged while training"
    for k in ("base_jsd_mean", "candidate_jsd_mean", "base_invalid_rate", "candidate_invalid_rate"):
        assert k in parent.data.metrics
    summary = json.loads(Path(c.download_artifacts(parent.info.run_id, "summary.json")).read_text())
    versions = c.search_model_versions("name = 'smoke-model'")
    assert len(versions) == 1
    mv = versions[0]
    assert mv.tags["divtune.decision"] in ("promote", "reject")
    assert reg.get_alias("smoke-model", "challenger").version == mv.version
    champion = reg.get_alias("smoke-model", "champion")
    assert (champion is not None) == summary["decision"]["promote"]
    # the registered version points at the merged model in object storage; its files are a safetensors model
    assert mv.source == f"s3://smoke-models/m/smoke-model/{key}"
    files = {p.name for p in reg.download_model_version("models:/smoke-model@challenger").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files and not any(f.endswith(".bin") for f in files)
    # retrying promotion of the same pipeline run registers nothing new
    root = Path(divtune_home) / "retry"
    root.mkdir()
    cand = root / "c.json"
    base = root / "b.json"
    cand.write_text(json.dumps({"metrics": summary["candidate"]}))
    base.write_text(json.dumps({"metrics": summary["base"]}))
    stages.open_run(cfg.to_yaml(), key)
    again = stages.promote(cfg.to_yaml(), key, str(cand), str(base), str(root / "s.json"))
    assert again["version"] == str(mv.version)
    assert len(c.search_model_versions("name = 'smoke-model'")) == 1
    # secrets never reach params, tags or artifacts we write (issue 7, security)
    runs = c.search_runs([parent.info.experiment_id])
    blob = json.dumps([[r.data.params, r.data.tags] for r in runs] + [dict(v.tags) for v in
                      c.search_model_versions("name = 'smoke-model'")]) + json.dumps(summary)
    blob += "".join(Path(c.download_artifacts(parent.info.run_id, a.path)).read_text()
                    for a in c.list_artifacts(parent.info.run_id) if a.path.endswith((".yaml", ".json")))
    for v in secrets.values():
        assert v not in blob
    # the same pipeline run again with KFP caching: every cacheable step is reused (no second train / merge /
    # evaluate child run), promotion re-runs and registers nothing twice
    assert run_local(cfg, key, enable_caching=True) == key
    stages_now = [r.data.tags["divtune.stage"] for r in
                  c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")]
    for s in ("train", "merge_lora", "evaluate_candidate", "evaluate_base", "synthesize_data"):
        assert stages_now.count(s) == 1, stages_now
    assert len(c.search_model_versions("name = 'smoke-model'")) == 1


def test_trainjob_manifest_for_multi_gpu_training():
    """Kubeflow Trainer TrainJob: torchrun on the same `divtune train` entry point, config travels in env."""
    from divtune.config import config_from_yaml_text
    from divtune.train.distributed import trainjob_manifest

    cfg = load_config("qwen2.5-32b-gapo")
    m = trainjob_manifest(cfg, name="gapo-32b", namespace="kubeflow-user", image="ghcr.io/divtune/divtune-trainer:0.1.0",
                          data_path="/mnt/divtune/data.jsonl", base_path="/mnt/divtune/base", output_path="/mnt/divtune/adapter",
                          num_nodes=2, gpus_per_node=8)
    assert m["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and m["kind"] == "TrainJob"
    t = m["spec"]["trainer"]
    assert t["command"][:3] == ["torchrun", "--module", "divtune.cli"] and t["args"][0] == "train"
    assert t["numNodes"] == 2 and t["numProcPerNode"] == 8 and t["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    env = {e["name"]: e for e in t["env"]}
    assert config_from_yaml_text(env["DIVTUNE_CONFIG_JSON"]["value"]) == cfg
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "divtune-s3"  # a reference only
    patch = m["spec"]["runtimePatches"][0]  # Trainer >= v2.2 (podTemplateOverrides is gone)
    job = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    over = job["template"]["spec"]["template"]["spec"]
    assert job["name"] == "node" and over["tolerations"][0]["key"] == "nvidia.com/gpu"
    vols = {v["name"]: v for v in over["volumes"]}
    assert vols["divtune-cache"]["persistentVolumeClaim"]["claimName"] == "divtune-cache"
    assert vols["dshm"]["emptyDir"]["medium"] == "Memory"  # NCCL shared memory
    # the entry point the pods run parses that config (bad env is a one-line error)
    from conftest import run_cli

    res = run_cli("train", "--config-json-env", "NO_SUCH_VAR_X", "--data", "/x.jsonl", "-o", "/tmp/x")
    assert res.returncode == 2 and "NO_SUCH_VAR_X is empty or unset" in res.stderr
