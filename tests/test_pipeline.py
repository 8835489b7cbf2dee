"""The KFP side: compile round-trip, one component through kfp.local, and the whole DAG on the toy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from divtune.config import load_config, load_images
from support import DAG_BUCKET, DAG_EXPERIMENT, DAG_MODEL, pipeline_tasks

STAGES = {"open-run", "prepare-base", "synthesize-data", "train", "merge-lora", "evaluate", "evaluate-2", "promote"}
#: steps that hold no model: no GPU, no GPU node
MODEL_FREE = ("exec-open-run", "exec-close-run", "exec-synthesize-data")


def test_compile_round_trip(tmp_path, cli):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    out = tmp_path / "retrain.yaml"
    res = cli("compile", "--preset", "toy", "-o", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    docs = list(yaml.safe_load_all(out.read_text()))
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "divtune-retrain"
    tasks = pipeline_tasks(docs[0])
    # the stages run inside an exit handler whose closing step marks a failed run FAILED in MLflow
    assert set(tasks) == STAGES | {"exit-handler-1", "close-run"}, set(tasks)
    assert set(spec.root.dag.tasks) == {"exit-handler-1", "close-run"}
    # the toy asks for no Kubernetes settings beyond each step's deadline: no GPU, volume or Secret
    for doc in docs[1:]:
        for name, ex in doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
            assert set(ex) <= {"activeDeadlineSeconds"}, (name, ex)
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
    assert set(tasks["train"]["inputs"]["artifacts"]) == {"base_model", "data"}
    assert set(tasks["promote"]["inputs"]["artifacts"]) == {"candidate_eval", "base_eval"}


def test_compiled_spec_carries_kubernetes_settings(tmp_path):
    """GPU preset: accelerators on train/evaluate/promote (promotion may evaluate the champion again), none on
    the steps that hold no model, tolerations + node selector on GPU steps, the cache PVC and Secret references
    (never values) on every step, tracking env; parsed back with kfp's proto types."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from divtune_kfp.pipelines.local import compile_pipeline

    cfg = load_config("qwen2.5-7b-gapo")
    out = compile_pipeline(cfg, tmp_path / "gpu.yaml")
    spec_doc, platform_doc = yaml.safe_load_all(out.read_text())
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    execs = spec_doc["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-evaluate", "exec-evaluate-2", "exec-promote"):
        acc = execs[name]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and int(acc["resourceCount"]) >= 1, name
    for name in MODEL_FREE:
        assert "accelerator" not in execs[name]["container"].get("resources", {}), name
    k8s = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    for name in MODEL_FREE:
        assert "tolerations" not in k8s[name], name
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
@pytest.mark.xdist_group("dag")
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
    # (the entry point with that variable unset: tests/test_bad_input_table.py, config-json-env-unset)
