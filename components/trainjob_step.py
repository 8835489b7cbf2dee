"""The ``train_distributed`` pipeline step: stage inputs on the cache PVC, run a Kubeflow Trainer TrainJob
(``divtune.train.distributed`` builds its manifest and talks to the Kubernetes API), collect the adapter."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from divtune.config import config_from_yaml_text, load_images
from divtune.errors import ConfigError
from divtune.models.pointers import model_dir_of
from divtune.registry import tracking
from divtune.train.distributed import (TrainJobError, current_namespace, custom_objects_api, run_trainjob,
                                       trainjob_manifest, trainjob_name)


def _global_step(checkpoints: Path) -> int:
    """The step of the newest checkpoint the TrainJob left (its stdout is not ours to read); 0 if none."""
    def step(p: Path) -> int:
        n = p.parent.name.rsplit("-", 1)[-1]
        return int(n) if n.isdigit() else -1

    states = sorted(checkpoints.glob("checkpoint-*/trainer_state.json"), key=step)
    if not states:
        return 0
    try:
        return int(json.loads(states[-1].read_text()).get("global_step", 0))
    except (OSError, ValueError):
        return 0


def train_with_trainjob(config_yaml: str, run_key: str, base_path: str, data_path: str, adapter_dir: str, *,
                        api=None, namespace: str | None = None, image: str | None = None,
                        poll_s: float = 15.0, **wait_kw: Any) -> dict[str, Any]:
    """The ``train_distributed`` pipeline step: stage inputs on the PVC, run the TrainJob, collect the adapter.

    Returns ``{"trainjob", "namespace", "output_path", "global_step", ...}``; ``output_path`` is the adapter on
    the PVC (also copied to ``adapter_dir``, the step's output artifact).
    """
    cfg = config_from_yaml_text(config_yaml)
    c = cfg.cluster
    if not c.cache_pvc:
        raise ConfigError("train_distributed needs cluster.cache_pvc: the TrainJob's nodes read the data and "
                          "write the adapter there")
    name = trainjob_name(run_key, cfg)
    root = Path(c.cache_mount_path)
    work = root / "trainjobs" / name
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data.jsonl"
    shutil.copyfile(data_path, data)
    base = model_dir_of(base_path).resolve()
    if not base.is_relative_to(root.resolve()):  # a model built or copied into the step's artifact
        staged = work / "base"
        if not (staged / "config.json").is_file():
            tmp = work / "base.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(base, tmp)
            os.replace(tmp, staged)
        base = staged
    output = work / "adapter"
    ns = namespace or current_namespace()
    params = {"trainjob": f"{ns}/{name}", "train_nodes": c.train_nodes, "gpus_per_node": c.train_gpus,
              "runtime": c.trainjob_runtime, "output_path": str(output)}
    with tracking.stage_run(cfg.registry.experiment, run_key, "train",
                            tracking.flatten({"train": cfg.to_dict()["train"], "distributed": params})) as rid:
        import mlflow

        manifest = trainjob_manifest(cfg, name=name, namespace=ns, image=image or load_images().ref("trainer"),
                                     data_path=str(data), base_path=str(base), output_path=str(output),
                                     num_nodes=c.train_nodes, gpus_per_node=c.train_gpus,
                                     runtime=c.trainjob_runtime, mlflow_run_id=rid)
        run_trainjob(api if api is not None else custom_objects_api(), manifest, timeout_s=c.trainjob_timeout_s,
                     poll_s=poll_s, **wait_kw)
        if not (output / "adapter_config.json").is_file():
            raise TrainJobError(f"TrainJob {ns}/{name} completed but wrote no adapter at {output}")
        out = Path(adapter_dir)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(output, out)
        step = _global_step(output.with_name(output.name + "-checkpoints"))
        mlflow.log_metric("final_global_step", step)
        return {**params, "namespace": ns, "global_step": step}
