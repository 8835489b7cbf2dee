"""The DAG's exit handler: a pipeline run whose steps did not all succeed leaves its MLflow parent run FAILED."""

from __future__ import annotations

import uuid

from divtune.config import load_config


def test_the_exit_handler_marks_a_failed_run_failed(tmp_path):
    """close_run (the DAG's exit handler) leaves a run whose steps failed FAILED with its state and error; a
    succeeded run is left to promote, which closes it."""
    from divtune import stages
    from divtune.registry import tracking

    cfg = load_config("toy")
    key = f"exit-{uuid.uuid4().hex[:8]}"
    stages.open_run(cfg.to_yaml(), key)
    assert stages.close_run(cfg.to_yaml(), key, "SUCCEEDED") == "SUCCEEDED"
    assert tracking.find_pipeline_run(cfg.registry.experiment, key).info.status == "RUNNING"
    stages.close_run(cfg.to_yaml(), key, "FAILED", "train: pod OOMKilled")
    run = tracking.find_pipeline_run(cfg.registry.experiment, key)
    assert run.info.status == "FAILED"
    assert run.data.tags["divtune.final_state"] == "FAILED" and "OOMKilled" in run.data.tags["divtune.error"]


def test_the_compiled_dag_has_the_exit_handler(tmp_path):
    from divtune_kfp.pipelines.local import compile_pipeline

    out = compile_pipeline(load_config("toy"), tmp_path / "toy.yaml")
    import yaml

    spec = next(yaml.safe_load_all(out.read_text()))
    root = spec["root"]["dag"]["tasks"]
    assert root["close-run"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "exit-handler-1" in root and "promote" in spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]


def test_a_run_with_another_cluster_section_than_compiled_is_refused(tmp_path):
    import pytest
    import yaml

    from divtune import stages
    from divtune.errors import DivtuneError
    from divtune_kfp.pipelines.local import compile_pipeline

    cfg = load_config("qwen2.5-7b-gapo")
    spec = next(yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "q7.yaml").read_text()))
    baked = spec["root"]["dag"]["tasks"]["exit-handler-1"]
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["open-run"]["inputs"]["parameters"]
    digest = inner["compiled_cluster"]["runtimeValue"]["constant"]
    assert digest == cfg.cluster.fingerprint() and baked
    other = load_config("qwen2.5-7b-gapo", overrides=["cluster.train_gpus=4"])
    with pytest.raises(DivtuneError, match="another cluster: section"):
        stages.open_run(other.to_yaml(), f"cl-{uuid.uuid4().hex[:6]}", digest)
    assert stages.open_run(load_config("toy").to_yaml(), f"cl-{uuid.uuid4().hex[:6]}", "")  # local runs: no check


def test_the_exit_handler_fails_the_stage_runs_a_killed_step_left_running(tmp_path):
    """A SIGKILLed step runs no handler of its own: its stage run stays RUNNING until close_run fails it."""
    from divtune import stages
    from divtune.registry import tracking

    cfg = load_config("toy")
    key = f"kill-{uuid.uuid4().hex[:8]}"
    stages.open_run(cfg.to_yaml(), key)
    parent = tracking.find_pipeline_run(cfg.registry.experiment, key)
    c = tracking.client()
    done = c.create_run(parent.info.experiment_id, tags={tracking.RUN_KEY_TAG: key, tracking.STAGE_TAG: "prepare_base"})
    c.set_terminated(done.info.run_id, "FINISHED")
    killed = c.create_run(parent.info.experiment_id, tags={tracking.RUN_KEY_TAG: key, tracking.STAGE_TAG: "train"})
    stages.close_run(cfg.to_yaml(), key, "FAILED", "train: exit 137")
    assert c.get_run(killed.info.run_id).info.status == "FAILED"
    assert c.get_run(done.info.run_id).info.status == "FINISHED"
    assert tracking.find_pipeline_run(cfg.registry.experiment, key).info.status == "FAILED"


def test_a_cache_volume_the_step_cannot_write_is_refused_first(tmp_path, monkeypatch):
    """A fresh (root-owned) PVC: open_run, the first step, names the fix instead of a PermissionError later."""
    import os

    import pytest

    from divtune import stages
    from divtune.errors import DivtuneError

    vol = tmp_path / "cache"
    vol.mkdir()
    monkeypatch.setenv("DIVTUNE_SHARED_HOME", "1")
    monkeypatch.setenv("DIVTUNE_HOME", str(vol))
    stages.check_cache_volume()  # writable: passes
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as uid 1000 on a root-owned 0755 directory
    with pytest.raises(DivtuneError, match="not writable .* manifests/cache-pvc.yaml"):
        stages.check_cache_volume()
