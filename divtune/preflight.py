"""Checks before a pipeline run starts: bad input is one line before any process starts or anything is
registered, and a tracking server or bucket that does not answer is found now, not after training."""

from __future__ import annotations

from typing import Any


def check_run(cfg: Any) -> None:
    """The config's inputs: base model path, gate policy, DARLING's required paths, the training data."""
    from divtune.data.dataset import check_source

    if cfg.model.source == "path":
        from divtune.models.checks import check_model_dir

        check_model_dir(cfg.model.path)
    if cfg.gate.policy:
        from divtune.promotion.gate import load_policy

        load_policy(cfg.gate.policy)
    if cfg.train.method == "darling":  # required paths (classifier, reward model) set, before anything starts
        from divtune.rewards.darling import check_darling_config

        check_darling_config(cfg.train.darling, local_paths=False)  # they may be the cluster's paths
    check_source(cfg.data)


def check_services(cfg: Any) -> None:
    """The tracking server answers and has the experiment; the models bucket exists (after retries)."""
    from divtune.registry import tracking

    tracking.setup()
    tracking.experiment_id(cfg.registry.experiment)  # a stopped tracking server: one line naming it
    if cfg.storage.models_uri:
        from divtune import storage

        storage.require_bucket(cfg.storage.models_uri, f"storage.models_uri {cfg.storage.models_uri}",
                               endpoint_url=cfg.storage.endpoint_url)


def _is_cluster_preset(cfg: Any) -> bool:
    """Whether the config is meant for a cluster: it asks for GPUs, a cache volume, Secrets or pod env."""
    c = cfg.cluster
    return bool(c.train_gpus or c.evaluate_gpus or c.merge_gpus or c.cache_pvc or c.secrets or c.env)


def check_cluster(cfg: Any, *, submitting: bool, core_api: Any = None, custom_api: Any = None) -> None:
    """What a run on the cluster needs and the config can say, one line each: pods that share one tracking
    server, required Secrets not mounted as optional; with Kubernetes credentials at hand (or the APIs given),
    also that the cache PVC exists and is ReadWriteMany, that every Secret exists, and that the TrainJob runtime
    exists; the training layout and per-GPU memory (:func:`divtune.train.memory.check_training_fit`).
    ``submitting``: a run or schedule (always checked); else a compile (checked for cluster presets)."""
    from urllib.parse import urlparse

    from divtune.errors import ConfigError

    if not submitting and not _is_cluster_preset(cfg):
        return  # a spec of the toy, to read: nothing will run it as it is
    from divtune.train.memory import check_training_fit

    check_training_fit(cfg)  # more than one GPU: a sharded TrainJob; the per-GPU arithmetic fits the card
    c = cfg.cluster
    uri = c.env.get("MLFLOW_TRACKING_URI", "")
    if urlparse(uri).scheme not in ("http", "https"):
        raise ConfigError("cluster.env.MLFLOW_TRACKING_URI must be the tracking server's http(s) URL (every pod "
                          f"would otherwise track into a store of its own){'; got ' + repr(uri[:60]) if uri else ''}")
    for s in c.secrets:
        if s.optional:
            raise ConfigError(f"cluster.secrets {s.name!r} is optional: a missing Secret would surface only when a "
                              "step needs it (after training); set optional: false")
    if core_api is None and custom_api is None:
        core_api, custom_api = _kube_apis()
        if core_api is None:
            return
    ns = c.namespace or _kube_namespace()
    _check_kube_objects(cfg, ns, core_api, custom_api)


def _kube_apis() -> tuple[Any, Any]:
    """The Kubernetes APIs from a kubeconfig or the pod's service account; (None, None) without credentials."""
    import os
    from pathlib import Path

    try:
        from kubernetes import client, config
    except ImportError:  # pragma: no cover - a dependency
        return None, None
    try:
        config.load_incluster_config()
    except Exception:  # noqa: BLE001 - not in a pod
        kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if not Path(kubeconfig.split(os.pathsep)[0]).is_file():
            return None, None
        try:
            config.load_kube_config()
        except Exception:  # noqa: BLE001 - an unusable kubeconfig: nothing to check against
            return None, None
    return client.CoreV1Api(), client.CustomObjectsApi()


def _kube_namespace() -> str:
    try:
        from kubernetes import config

        _, ctx = config.list_kube_config_contexts()
        return (ctx or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001
        from divtune.train.distributed import current_namespace

        return current_namespace()


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def _check_kube_objects(cfg: Any, ns: str, core: Any, custom: Any) -> None:
    from divtune.errors import ConfigError, one_line

    c = cfg.cluster

    def get(what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - 404 is the answer; anything else: the API did not answer
            if _status(exc) == 404:
                return None
            raise ConfigError(f"Kubernetes API: cannot read {what}: {one_line(exc, 160)}") from None

    if c.cache_pvc:
        pvc = get(f"PVC {ns}/{c.cache_pvc}", core.read_namespaced_persistent_volume_claim, c.cache_pvc, ns)
        if pvc is None:
            raise ConfigError(f"cluster.cache_pvc: PVC {ns}/{c.cache_pvc} does not exist "
                              "(manifests/cache-pvc.yaml creates one)")
        modes = ", ".join(getattr(pvc.spec, "access_modes", None) or []) or "without an access mode"
        if "ReadWriteMany" not in modes:
            raise ConfigError(f"cluster.cache_pvc: PVC {ns}/{c.cache_pvc} is {modes}; steps run at once on different "
                              "nodes, so it must be ReadWriteMany")
    for s in c.secrets:
        if get(f"Secret {ns}/{s.name}", core.read_namespaced_secret, s.name, ns) is None:
            raise ConfigError(f"cluster.secrets: Secret {ns}/{s.name} does not exist")
    if c.uses_trainjob:
        from divtune.train import distributed as dist

        rt = get(f"ClusterTrainingRuntime {c.trainjob_runtime}", custom.get_cluster_custom_object, dist.GROUP,
                 dist.VERSION, "clustertrainingruntimes", c.trainjob_runtime)
        if rt is None:
            raise ConfigError(f"cluster.trainjob_runtime: ClusterTrainingRuntime {c.trainjob_runtime!r} does not exist "
                              "(install Kubeflow Trainer's runtimes, or manifests/trainer-runtime.yaml)")
