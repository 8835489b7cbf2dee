"""The compiled spec's scheduling (resources, retries, timeouts, placement) and the cluster preflight: what a run
on Kubernetes needs and the config or the cluster can tell before anything runs, one line each."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from divtune.config import load_config
from divtune.errors import ConfigError
from divtune.preflight import check_cluster

GPU_PRESET = "qwen2.5-7b-gapo"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    from divtune_kfp.pipelines.local import compile_pipeline

    out = tmp_path_factory.mktemp("spec") / "q7.yaml"
    compile_pipeline(load_config(GPU_PRESET), out)
    docs = list(yaml.safe_load_all(out.read_text()))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_task_has_requests_limits_and_a_timeout(spec):
    pipeline, platform = spec
    cfg = load_config(GPU_PRESET).cluster
    for name, ex in pipeline["deploymentSpec"]["executors"].items():
        r = ex["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert r.get(key), (name, key)
        assert platform[name]["activeDeadlineSeconds"] == str(cfg.step_timeout_s), name
    heavy = pipeline["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    light = pipeline["deploymentSpec"]["executors"]["exec-open-run"]["container"]["resources"]
    assert heavy["resourceMemoryRequest"] == cfg.memory_request and light["resourceMemoryRequest"] == cfg.light_memory_request


def test_gpu_steps_retry_and_merge_and_promote_sit_on_the_gpu_nodes(spec):
    pipeline, platform = spec
    tasks = dict(pipeline["root"]["dag"]["tasks"])  # and the tasks inside the exit handler's group
    for comp in pipeline["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    assert {n for n, t in tasks.items() if "retryPolicy" in t} == {"train", "evaluate", "evaluate-2"}
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == load_config(GPU_PRESET).cluster.gpu_retries
    for name in ("exec-merge-lora", "exec-promote", "exec-train"):
        assert platform[name].get("tolerations") and platform[name].get("nodeSelector"), name
    assert "tolerations" not in platform["exec-open-run"]


def test_submitting_needs_a_shared_tracking_server():
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI must be the tracking server's http"):
        check_cluster(load_config("toy"), submitting=True, core_api=_Core(), custom_api=_Custom())
    check_cluster(load_config("toy"), submitting=False)  # a spec of the toy to read: compiles
    bad = load_config(GPU_PRESET, overrides=["cluster.env.MLFLOW_TRACKING_URI=sqlite:///x.db"])
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        check_cluster(bad, submitting=False)


def test_required_secrets_are_not_optional():
    cfg = load_config(GPU_PRESET, overrides=["cluster.secrets=[{name: divtune-s3, keys: {A: A}, optional: true}]"])
    with pytest.raises(ConfigError, match="'divtune-s3' is optional"):
        check_cluster(cfg, submitting=True, core_api=_Core(), custom_api=_Custom())


class _NotFound(Exception):
    status = 404


class _Core:
    def __init__(self, pvcs=None, secrets=()):
        self.pvcs, self.secrets = pvcs or {}, set(secrets)

    def read_namespaced_persistent_volume_claim(self, name, ns):
        if (ns, name) not in self.pvcs:
            raise _NotFound()
        return SimpleNamespace(spec=SimpleNamespace(access_modes=self.pvcs[(ns, name)]))

    def read_namespaced_secret(self, name, ns):
        if (ns, name) not in self.secrets:
            raise _NotFound()
        return SimpleNamespace()


class _Custom:
    def __init__(self, runtimes=()):
        self.runtimes = set(runtimes)

    def get_cluster_custom_object(self, group, version, plural, name):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes")
        if name not in self.runtimes:
            raise _NotFound()
        return {"metadata": {"name": name}}


def test_the_cluster_objects_a_run_needs(monkeypatch):
    cfg = load_config(GPU_PRESET, overrides=["cluster.namespace=team"])
    ok_core = _Core({("team", "divtune-cache"): ["ReadWriteMany"]}, [("team", "divtune-s3")])
    check_cluster(cfg, submitting=True, core_api=ok_core, custom_api=_Custom())
    with pytest.raises(ConfigError, match="PVC team/divtune-cache does not exist"):
        check_cluster(cfg, submitting=True, core_api=_Core(secrets=[("team", "divtune-s3")]), custom_api=_Custom())
    rwo = _Core({("team", "divtune-cache"): ["ReadWriteOnce"]}, [("team", "divtune-s3")])
    with pytest.raises(ConfigError, match="ReadWriteOnce.*must be ReadWriteMany"):
        check_cluster(cfg, submitting=True, core_api=rwo, custom_api=_Custom())
    with pytest.raises(ConfigError, match="Secret team/divtune-s3 does not exist"):
        check_cluster(cfg, submitting=True, core_api=_Core({("team", "divtune-cache"): ["ReadWriteMany"]}),
                      custom_api=_Custom())
    tj = load_config(GPU_PRESET, overrides=["cluster.namespace=team", "cluster.train_distributed=trainjob"])
    with pytest.raises(ConfigError, match="ClusterTrainingRuntime 'torch-distributed' does not exist"):
        check_cluster(tj, submitting=True, core_api=ok_core, custom_api=_Custom())
    check_cluster(tj, submitting=True, core_api=ok_core, custom_api=_Custom(["torch-distributed"]))


def test_compile_refuses_a_cluster_preset_without_a_tracking_server(tmp_path):
    from divtune.cli import main

    out = tmp_path / "q7.yaml"
    assert main(["compile", "--preset", GPU_PRESET, "--set", "cluster.env={}", "-o", str(out)]) == 2
    assert not out.exists()


def test_evaluate_and_promote_report_to_the_kfp_ui(spec):
    """KFP shows Metrics artifacts on the run page and in run comparison, and Markdown artifacts as reports."""
    pipeline, _ = spec
    comps = pipeline["components"]
    for comp in ("comp-evaluate", "comp-promote"):
        outs = {k: v["artifactType"]["schemaTitle"] for k, v in comps[comp]["outputDefinitions"]["artifacts"].items()}
        assert "system.Metrics" in outs.values() and "system.Markdown" in outs.values(), (comp, outs)


def test_the_evaluation_report_in_markdown():
    from divtune.evaluate.report import evaluation_markdown

    res = {"lists": {"jsd_mean": 0.2, "invalid_rate": 0.01, "entropy_mean": 2.5, "num_lists": 1, "samples": 4,
                     "per_list": [{"category": "planets", "jsd": 0.2, "invalid_rate": 0.01, "unique": 3,
                                   "items": ["Mars", "Venus", "Earth", "Pluto"],
                                   "counts": {"Mars": 2, "Venus": 1, "Earth": 1, "Pluto": 0}}]}}
    md = evaluation_markdown("candidate", {"jsd_mean": 0.2, "invalid_rate": 0.01}, res)
    assert "| jsd_mean | 0.2000 |" in md and "| planets | 0.200 | 0.010 | 3/4 | Mars (2)" in md


def test_cluster_check_refuses_training_that_does_not_fit_its_gpus():
    """`check_cluster` (compile, run --kfp-host, schedule) runs the training layout and memory check first
    (divtune/train/memory.py): the 32B preset's old one-pod settings, and the preset on one 80 GB GPU."""
    old = load_config("qwen2.5-32b-gapo", overrides=["cluster.train_distributed=none", "train.sharding=none",
                                                     "train.vllm_tensor_parallel_size=1"])
    with pytest.raises(ConfigError, match="qwen2.5-32b-gapo: cluster.train_gpus 4 in one pod trains in one process"):
        check_cluster(old, submitting=False)
    one = load_config("qwen2.5-32b-gapo", overrides=["cluster.train_gpus=1", "cluster.train_distributed=none",
                                                     "train.sharding=none", "train.vllm_tensor_parallel_size=1"])
    with pytest.raises(ConfigError, match=r"training needs \d+\.\d GiB per GPU .* cluster.gpu_memory_gib is 79"):
        check_cluster(one, submitting=True, core_api=_Core(), custom_api=_Custom())
    ok_core = _Core({("default", "divtune-cache"): ["ReadWriteMany"]}, [("default", "divtune-s3")])
    check_cluster(load_config("qwen2.5-32b-gapo", overrides=["cluster.namespace=default"]), submitting=True,
                  core_api=ok_core, custom_api=_Custom(["torch-distributed"]))  # the shipped preset fits
