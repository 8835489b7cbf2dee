"""The KFP side: compile round-trip, one component through kfp.local, the TrainJob manifest (the whole DAG on the
toy: tests/test_dag_run.py)."""

from __future__ import annotations

import yaml

from divtune.config import load_config, load_images
from support import pipeline_tasks

STAGES = {"open-run", "prepare-base", "synthesize-data", "train", "merge-lora", "evaluate", "evaluate-2", "promote",
          "deploy"}
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
    assert set(tasks) == STAGES | {"exit-handler-1", "close-run", "condition-2"}, set(tasks)
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
    # deploy runs inside a condition on promote's decision and reads the version promote registered
    cond = tasks["condition-2"]
    assert cond["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--promote-Output'] == 'promote'"
    assert "promote" in cond["dependentTasks"]
    assert "deploy" in spec.components[cond["componentRef"]["name"]].dag.tasks
    assert set(tasks["deploy"]["inputs"]["artifacts"]) == {"decision"}


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
