"""Multi-GPU / multi-node training as a Kubeflow Trainer ``TrainJob`` running ``torchrun`` on ``divtune train``.

The ``torch-distributed`` runtime sets the ``PET_*`` variables torchrun reads (nodes, processes per node,
rank, master address), so every process runs the same entry point as a single-GPU step; TRL/accelerate
pick the world up from torchrun, and the GAPO reward gathers groups across ranks (or the geometry check
refuses a batch that would split a group).  Data and outputs live on the shared cache PVC.

The pipeline's ``train_distributed`` step (``divtune_kfp.components.trainjob_step``) stages the data (and a
base model that is not on the PVC yet) under ``<cache>/trainjobs/<name>/``, creates the TrainJob through the
Kubernetes API (``trainer.kubeflow.org/v1alpha1``, plural ``trainjobs``), polls its ``Complete`` / ``Failed``
conditions until a timeout, and copies the adapter into the step's output.  The TrainJob's name is fixed by
the run key and the config, so a retried step attaches to the job it already created, and a re-created job
resumes from the checkpoints on the PVC.  API: Kubeflow Trainer v2.3 (``runtimePatches`` replaced
``podTemplateOverrides`` in v2.2); ``tests/test_crds.py`` validates the manifest against the vendored CRD.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from divtune.config import ClusterConfig, PipelineConfig
from divtune.errors import ConfigError, DivtuneError, one_line
from divtune.train.sharding import launcher_env

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
PATCH_MANAGER = "divtune/train-distributed"  # owner of our entry in spec.runtimePatches
NODE = "node"  # the replicated job and container name of the torch runtimes
SHM_SIZE = "64Gi"  # /dev/shm for NCCL and dataloader workers (the container default is 64 MiB)
_NS_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class TrainJobError(DivtuneError):
    """The TrainJob could not be created, failed, or did not finish in time."""


def trainjob_name(run_key: str, cfg: PipelineConfig) -> str:
    """A stable RFC 1035 name (the CRD's rule), short enough for the JobSet's pod hostnames."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_key.lower()).strip("-")[:20].strip("-") or "run"
    digest = hashlib.sha256(f"{run_key}\n{cfg.to_json()}".encode()).hexdigest()[:8]
    return f"divtune-{slug}-{digest}"


def trainjob_manifest(cfg: PipelineConfig, *, name: str, namespace: str, image: str, data_path: str,
                      base_path: str, output_path: str, num_nodes: int = 1, gpus_per_node: int = 8,
                      runtime: str = "torch-distributed", mlflow_run_id: str | None = None) -> dict[str, Any]:
    """The TrainJob: ``num_nodes`` x ``gpus_per_node`` torchrun processes on ``divtune train``; the config in env,
    Secrets as references, tolerations / node selector / cache PVC / ``/dev/shm`` as a runtime patch of the
    ``node`` job.  ``mlflow_run_id``: the pipeline's ``train`` child run, where rank 0 logs its metrics.
    ``train.sharding: fsdp`` adds accelerate's FSDP variables (:func:`divtune.train.sharding.launcher_env`);
    with ``none`` the command and env are plain torchrun (DDP of the adapter, or gloo on CPU)."""
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
    if mlflow_run_id:
        env.append({"name": "MLFLOW_RUN_ID", "value": mlflow_run_id})
    env += [{"name": k, "value": v} for k, v in launcher_env(cfg.train).items()]  # FSDP: accelerate's contract
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
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "divtune"}},
        "spec": {"runtimeRef": {"name": runtime}, "trainer": trainer},
    }
    pod: dict[str, Any] = {}
    if c.tolerations:
        pod["tolerations"] = [{k: v for k, v in vars(t).items() if v is not None} for t in c.tolerations]
    if c.node_selector:
        pod["nodeSelector"] = dict(c.node_selector)
    if c.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in c.image_pull_secrets]
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if c.cache_pvc:
        volumes.append({"name": "divtune-cache", "persistentVolumeClaim": {"claimName": c.cache_pvc}})
        mounts.append({"name": "divtune-cache", "mountPath": c.cache_mount_path})
    pod["volumes"] = volumes
    pod["containers"] = [{"name": NODE, "volumeMounts": mounts}]
    manifest["spec"]["runtimePatches"] = [{
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
            {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}]}}},
    }]
    return manifest


# ---------------------------------------------------------------------------------------------------------
# Kubernetes API: create, wait, delete
# ---------------------------------------------------------------------------------------------------------


def custom_objects_api():
    """``kubernetes.client.CustomObjectsApi`` from the pod's service account, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as exc:  # noqa: BLE001 - no cluster credentials at all
            raise TrainJobError(f"no Kubernetes credentials (not in a pod, and no kubeconfig): "
                                f"{one_line(exc, 200)}") from None
    return client.CustomObjectsApi()


def current_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (the service account's), ``POD_NAMESPACE``, or ``default``."""
    try:
        return Path(_NS_FILE).read_text().strip() or default
    except OSError:
        return os.environ.get("POD_NAMESPACE") or default


def _api_error(exc: Exception) -> tuple[int | None, str]:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    msg = ""
    if body:
        try:
            msg = json.loads(body).get("message", "")
        except (ValueError, AttributeError, TypeError):
            msg = str(body)
    msg = msg or getattr(exc, "reason", None) or str(exc)
    return status, " ".join(str(msg).split())[:300]


def submit_trainjob(api, manifest: dict[str, Any]) -> str:
    """Create the TrainJob; one that already exists under this name (a retried step) is reused."""
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
        return "created"
    except Exception as exc:  # noqa: BLE001 - kubernetes.client.ApiException, urllib3 errors
        status, msg = _api_error(exc)
        if status == 409:
            return "exists"
        where = f"cannot create TrainJob {ns}/{name}"
        if status == 404:
            raise TrainJobError(f"{where}: the {GROUP}/{VERSION} TrainJob API is not installed in the cluster "
                                f"(install Kubeflow Trainer v2): {msg}") from None
        if status in (401, 403):
            raise TrainJobError(f"{where}: not allowed ({msg}); the pipeline's service account needs create/get/"
                                f"delete on trainjobs.{GROUP} (manifests/pipeline-rbac.yaml)") from None
        if status in (400, 422):
            raise TrainJobError(f"{where}: rejected by the API server: {msg}") from None
        raise TrainJobError(f"{where}: {msg}") from None


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def trainjob_state(obj: dict[str, Any]) -> str:
    """``Complete``, ``Failed``, ``Suspended`` or ``Running`` (no terminal condition yet) from the conditions."""
    conds = _conditions(obj)
    for t in ("Failed", "Complete", "Suspended"):
        if conds.get(t, {}).get("status") == "True":
            return t
    return "Running"


def delete_trainjob(api, name: str, namespace: str) -> bool:
    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                            body={"propagationPolicy": "Foreground"})
        return True
    except Exception:  # noqa: BLE001 - best effort
        return False


def wait_for_trainjob(api, name: str, namespace: str, *, timeout_s: float, poll_s: float = 15.0,
                      delete_on_timeout: bool = True, max_api_failures: int = 5,
                      sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Poll until the ``Complete`` condition (returns the object); ``Failed`` or the timeout raise one line.

    Transient API errors are retried (up to ``max_api_failures`` in a row); a TrainJob that disappears
    (deleted by someone) is an error.  On timeout the TrainJob is deleted unless ``delete_on_timeout`` is
    false; its checkpoints stay on the PVC, so the next attempt resumes.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    where = f"TrainJob {namespace}/{name}"
    deadline = clock() + timeout_s
    failures, last = 0, None
    while True:
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            failures = 0
        except Exception as exc:  # noqa: BLE001
            status, msg = _api_error(exc)
            if status == 404:
                raise TrainJobError(f"{where} disappeared while training (deleted?)") from None
            failures += 1
            if failures >= max_api_failures or status in (401, 403):
                raise TrainJobError(f"cannot read {where}: {msg}") from None
            obj = None
        if obj is not None:
            state = trainjob_state(obj)
            if state != last:
                log(f"[train_distributed] {where}: {state}")
                last = state
            if state == "Complete":
                return obj
            if state == "Failed":
                c = _conditions(obj)["Failed"]
                detail = ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
                raise TrainJobError(f"{where} failed" + (f": {' '.join(detail.split())[:300]}" if detail else ""))
        left = deadline - clock()
        if left <= 0:
            gone = delete_trainjob(api, name, namespace) if delete_on_timeout else False
            raise TrainJobError(f"{where} did not finish within {timeout_s:g} s (last state: {last or 'unknown'}); "
                                + ("deleted it, checkpoints stay on the PVC" if gone else "it was left running"))
        sleep(min(poll_s, left))


def run_trainjob(api, manifest: dict[str, Any], *, timeout_s: float, poll_s: float = 15.0,
                 **wait_kw: Any) -> dict[str, Any]:
    """Create (or reuse) the TrainJob and wait for it; returns the finished object."""
    how = submit_trainjob(api, manifest)
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    print(f"[train_distributed] TrainJob {ns}/{name} {how} ({manifest['spec']['trainer']['numNodes']} node(s) x "
          f"{manifest['spec']['trainer']['numProcPerNode']} process(es))", file=sys.stderr, flush=True)
    return wait_for_trainjob(api, name, ns, timeout_s=timeout_s, poll_s=poll_s, **wait_kw)
