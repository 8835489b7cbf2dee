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
