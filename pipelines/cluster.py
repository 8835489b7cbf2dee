"""Kubernetes scheduling for the pipeline's steps through kfp-kubernetes: resources, GPUs, tolerations, node
selectors, retries and timeouts, a cache PVC, Secrets as environment variables (references only), plain env,
pull secrets.

Applied at compile time from ``ClusterConfig``; local (kfp.local) runs use the undecorated DAG.
"""

from __future__ import annotations

from typing import Literal

from kfp import dsl, kubernetes

from divtune.config import ClusterConfig

Role = Literal["train", "evaluate", "merge", "promote", "heavy", "cpu", "deploy"]
#: Roles that run on the GPU nodes (their tolerations and node selector): the GPU steps, the merge (it holds the
#: whole model in memory, which the GPU nodes have) and promote (it may evaluate the champion again).
GPU_NODE_ROLES = ("train", "evaluate", "merge", "promote")
RETRIED_ROLES = ("train", "evaluate")


def cache_env(mount_path: str) -> dict[str, str]:
    """The environment of a step that mounts the cache PVC at ``mount_path``."""
    return {"DIVTUNE_HOME": mount_path,
            "HF_HOME": f"{mount_path.rstrip('/')}/huggingface",  # hub downloads: cached, and pointers into them hold
            "DIVTUNE_SHARED_HOME": "1"}  # every step sees $DIVTUNE_HOME


def apply(task: dsl.PipelineTask, cluster: ClusterConfig | None, role: Role) -> dsl.PipelineTask:
    """The step's Kubernetes settings for ``role``: resources (requests and limits on every step), GPUs and
    placement, retries (GPU steps), a timeout, the cache volume, Secrets, env, image pull secrets."""
    if cluster is None:
        return task
    c = cluster
    gpus = {"train": c.train_gpus, "evaluate": c.evaluate_gpus, "merge": c.merge_gpus,
            "promote": c.evaluate_gpus}.get(role, 0)
    if gpus:
        task.set_accelerator_type(c.gpu_resource).set_accelerator_limit(gpus)
    if role in GPU_NODE_ROLES and (c.train_gpus or c.evaluate_gpus or c.merge_gpus):
        for t in c.tolerations:
            kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        for k, v in c.node_selector.items():
            kubernetes.add_node_selector(task, k, v)
    light = role in ("cpu", "deploy")  # deploy: Kubernetes API calls and, with a canary, a few HTTP requests
    task.set_cpu_request(c.light_cpu_request if light else c.cpu_request)
    task.set_cpu_limit(c.light_cpu_limit if light else c.cpu_limit)
    task.set_memory_request(c.light_memory_request if light else c.memory_request)
    task.set_memory_limit(c.light_memory_limit if light else c.memory_limit)
    if role in RETRIED_ROLES and c.gpu_retries:
        task.set_retry(num_retries=c.gpu_retries, backoff_duration=f"{c.retry_backoff_s}s", backoff_factor=2.0)
    kubernetes.set_timeout(task, c.step_timeout_s)
    if c.cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=c.cache_pvc, mount_path=c.cache_mount_path)
        for k, v in cache_env(c.cache_mount_path).items():
            task.set_env_variable(k, v)
    for s in c.secrets:
        kubernetes.use_secret_as_env(task, secret_name=s.name, secret_key_to_env=dict(s.keys), optional=s.optional)
    for k, v in c.env.items():
        task.set_env_variable(k, v)
    if c.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(c.image_pull_secrets))
    return task
