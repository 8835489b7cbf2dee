"""Submit the retraining pipeline to a Kubeflow Pipelines endpoint: one run, or a recurring run.

The pipeline is compiled locally with the run's config as its default parameter, so what runs
on the cluster is exactly what ``divtune compile`` writes.  Authentication follows kfp.Client
(in-cluster service account, ``KF_PIPELINES_SA_TOKEN_PATH``, an existing kubeconfig/IAP setup), or a bearer
token in ``KF_PIPELINES_TOKEN`` for multi-user Kubeflow with ``cluster.namespace``; runs use
``cluster.service_account`` and the caching each task sets.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from divtune.config import PipelineConfig
from divtune.cron import validate_cron
from divtune.errors import DivtuneError, one_line
from divtune_kfp.pipelines.local import compile_pipeline
from divtune_kfp.pipelines.retrain import PIPELINE_NAME


CONNECT_TIMEOUT_S = 30.0


def _client(host: str, namespace: str | None = None):
    import warnings

    import kfp

    # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2 (what the manifests deploy)
    warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning)
    box: dict = {}

    def connect() -> None:
        try:
            client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get("KF_PIPELINES_TOKEN") or None)
            client.get_kfp_healthz()
            box["client"] = client
        except Exception as exc:  # noqa: BLE001 - connection/auth failures become one line
            box["error"] = exc

    worker = threading.Thread(target=connect, daemon=True)  # a host that never answers must not hang the CLI
    worker.start()
    worker.join(CONNECT_TIMEOUT_S)
    if worker.is_alive():
        raise DivtuneError(f"Kubeflow Pipelines at {host} did not answer within {CONNECT_TIMEOUT_S:g} s")
    if "error" in box:
        raise DivtuneError(f"cannot reach Kubeflow Pipelines at {host}: {one_line(box['error'], 200)}") from None
    return box["client"]


def submit(cfg: PipelineConfig, host: str, run_key: str | None = None) -> str:
    """Start one pipeline run; returns its run id.  Caching is as each task sets it (no client-wide override)."""
    c = cfg.cluster
    client = _client(host, c.namespace)
    with tempfile.TemporaryDirectory() as tmp:
        spec = compile_pipeline(cfg, Path(tmp) / "retrain.yaml")
        res = client.create_run_from_pipeline_package(
            str(spec), arguments={"run_key": run_key or ""}, run_name=f"{PIPELINE_NAME}-{cfg.name}",
            experiment_name=cfg.registry.experiment, namespace=c.namespace, service_account=c.service_account,
            enable_caching=None)
    return res.run_id


def schedule(cfg: PipelineConfig, host: str, cron: str, *, name: str | None = None, max_concurrency: int = 1) -> str:
    """Create a KFP recurring run of the compiled pipeline; returns the recurring run id."""
    expr = validate_cron(cron)  # before anything talks to the cluster
    c = cfg.cluster
    client = _client(host, c.namespace)
    exp = client.create_experiment(cfg.registry.experiment, namespace=c.namespace)
    with tempfile.TemporaryDirectory() as tmp:
        spec = compile_pipeline(cfg, Path(tmp) / "retrain.yaml")
        rr = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name or f"{PIPELINE_NAME}-{cfg.name}-scheduled",
            cron_expression=expr, max_concurrency=max_concurrency, no_catchup=True,
            pipeline_package_path=str(spec), params={"run_key": ""}, service_account=c.service_account,
            enable_caching=None)
    return rr.recurring_run_id
