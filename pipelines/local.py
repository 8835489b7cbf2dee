"""Run, compile and inspect the retraining pipeline without a cluster (kfp.local: subprocesses of this Python, or
containers through a DockerRunner, see :mod:`divtune_kfp.pipelines.containers`)."""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

from divtune import paths
from divtune.config import PipelineConfig


def run_local(cfg: PipelineConfig, run_key: str | None = None, *, pipeline_root: str | None = None,
              enable_caching: bool = False, runner=None, workspace_root: str | None = None) -> str:
    """Execute the whole DAG (in subprocesses of this Python, or with ``runner``, e.g. a DockerRunner); return the
    run key."""
    from kfp import local

    from divtune_kfp.pipelines.retrain import retrain

    key = run_key or f"local-{uuid.uuid4().hex[:12]}"
    root = pipeline_root or str(paths.home() / "kfp-local")
    Path(root).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if runner is None:  # subprocesses of this Python: every step shares this machine's filesystem
        os.environ["DIVTUNE_SHARED_FS"] = "1"
    # kfp.local warns once per task that it runs our images' code in this Python (that is the point) and that
    # display names do nothing locally: noise on stderr, where a failed run must leave one line
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=r".*settings \['display_name'\] have no effect", category=UserWarning)
    local.init(runner=runner or local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True,
               enable_caching=enable_caching, workspace_root=workspace_root)
    retrain(config_yaml=cfg.to_json(), run_key=key)
    return key


def compile_pipeline(cfg: PipelineConfig, out: str | os.PathLike) -> Path:
    """Write the pipeline spec YAML with ``cfg`` as the default ``config_yaml`` parameter."""
    from kfp import compiler

    from divtune_kfp.pipelines.retrain import make_pipeline

    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(make_pipeline(cfg.cluster), str(p), pipeline_parameters={"config_yaml": cfg.to_json()})
    return p
