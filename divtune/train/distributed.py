"""Multi-GPU / multi-node training as a Kubeflow Trainer ``TrainJob`` running ``torchrun`` on ``divtune train``.

The ``torch-distributed`` runtime sets the ``PET_*`` variables torchrun reads (nodes, processes per node,
rank, master address), so every process runs the same entry point as a single-GPU step; TRL/accelerate
pick the world up from torchrun, and the GAPO reward gathers groups across ranks (or the geometry check
refuses a batch that would split a group).  Data and outputs live on the shared cache PVC.
"""

from __future__ import annotations

from typing import Any

from divtune.config import PipelineConfig
from divtune.errors import ConfigError


def trainjob_manifest(cfg: PipelineConfig, *, name: str, namespace: str, image: str, data_path: str,
                      base_path: str, output_path: str, num_nodes: int = 1, gpus_per_node: int = 8,
                      runtime: str = "torch-distributed") -> dict[str, Any]:
    if num_nodes < 1 or gpus_per_node < 1:
        raise ConfigError("a TrainJob needs num_nodes >= 1 and gpus_per_node >= 1")
    c = cfg.cluster
    env = [{"name": "DIVTUNE_CONFIG_JSON", "value": cfg.to_json()}, {"name": "HF_HUB_OFFLINE", "value": "1"}]
    env += [{"name": k, "value": v} for k, v in c.env.items()]
    for s in c.secrets:
        env += [{"name": e, "valueFrom": {"secretKeyRef": {"name": s.name, "key": k, "optional": s.optional}}}
                for k, e in s.keys.items()]
    if c.cache_pvc:
        env.append({"name": "DIVTUNE_HOME", "value": c.cache_mount_path})
    trainer: dict[str, Any] = {
        "image": image,
        "command": ["torchrun", "--module", "divtune.cli"],
        "args": ["train", "--config-json-env", "DIVTUNE_CONFIG_JSON", "--data", data_path, "--base", base_path,
                 "-o", output_path],
        "env": env,
        "numNodes": num_nodes,
        "numProcPerNode": gpus_per_node,
        "resourcesPerNode": {"limits": {c.gpu_resource: gpus_per_node}},
    }
    manifest: dict[str, Any] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "divtune"}},
        "spec": {"runtimeRef": {"name": runtime}, "trainer": trainer},
    }
    overrides: dict[str, Any] = {}
    if c.tolerations:
        overrides["tolerations"] = [{k: v for k, v in vars(t).items() if v is not None} for t in c.tolerations]
    if c.node_selector:
        overrides["nodeSelector"] = dict(c.node_selector)
    if c.cache_pvc:
        overrides["volumes"] = [{"name": "divtune-cache", "persistentVolumeClaim": {"claimName": c.cache_pvc}}]
        overrides["containers"] = [{"name": "node", "volumeMounts": [{"name": "divtune-cache",
                                                                       "mountPath": c.cache_mount_path}]}]
    if overrides:
        manifest["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": overrides}]
    return manifest
