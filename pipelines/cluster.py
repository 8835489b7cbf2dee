"""Kubernetes scheduling for the pipeline's steps through kfp-kubernetes: GPUs, tolerations, node
selectors, a cache PVC, Secrets as environment variables (references only), plain env, pull secrets.

Applied at compile time from ``ClusterConfig``; local (kfp.local) runs use the undecorated DAG.
"""

from __future__ import annotations

from typing import Literal

from kfp import dsl, kubernetes

from divtune.config import ClusterConfig

Role = Literal["train", "evaluate", "merge", "cpu"]


def apply(task: dsl.PipelineTask, cluster: ClusterConfig | None, role: Role) -> dsl.PipelineTask:
    if cluster is None:
        return task
    gpus = {"train": cluster.train_gpus, "evaluate": cluster.evaluate_gpus, "merge": cluster.merge_gpus}.get(role, 0)
    if gpus:
        task.set_accelerator_type(cluster.gpu_resource).set_accelerator_limit(gpus)
        for t in cluster.tolerations:
            kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        for k, v in cluster.node_selector.items():
            kubernetes.add_node_selector(task, k, v)
    if cluster.cpu_request and role != "cpu":
        task.set_cpu_request(cluster.cpu_request)
    if cluster.memory_request and role != "cpu":
        task.set_memory_request(cluster.memory_request)
    if cluster.cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=cluster.cache_pvc, mount_path=cluster.cache_mount_path)
        task.set_env_variable("DIVTUNE_HOME", cluster.cache_mount_path)
    for s in cluster.secrets:
        kubernetes.use_secret_as_env(task, secret_name=s.name, secret_key_to_env=dict(s.keys), optional=s.optional)
    for k, v in cluster.env.items():
        task.set_env_variable(k, v)
    if cluster.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(cluster.image_pull_secrets))
    return task
