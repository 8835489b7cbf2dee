"""Training through TRL on the toy: real steps, live diversity metrics, resume from a checkpoint."""

from __future__ import annotations

import pytest

from divtune.config import LoraConfig, TrainConfig, load_config
from divtune.data.lists import synthesize_lists
from divtune.errors import ConfigError


def _tc(**kw):
    base = dict(method="gapo", num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                max_steps=2, learning_rate=1e-4, loss_type="grpo", max_completion_length=12, save_steps=1,
                logging_steps=1, lora=LoraConfig(r=4, alpha=8, dropout=0.0))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(toy_model_dir, tmp_path):
    from divtune.train.trainer import train

    rows = [e.to_row() for e in synthesize_lists(20, 0, load_config("toy").data.categories)]
    first = train(toy_model_dir, rows, _tc(max_steps=2), tmp_path / "a1", tmp_path / "ckpt")
    assert first.global_step == 2 and first.resumed_from is None
    assert (tmp_path / "a1" / "adapter_model.safetensors").is_file()
    # "killed" after step 2: starting again with the same checkpoint dir continues from checkpoint-2
    again = train(toy_model_dir, rows, _tc(max_steps=3), tmp_path / "a2", tmp_path / "ckpt")
    assert again.resumed_from is not None and again.resumed_from.endswith("checkpoint-2")
    assert again.global_step == 3


def test_batch_geometry_refused_before_training(tmp_path):
    from divtune.train.trainer import grpo_config

    with pytest.raises(ConfigError, match="multiple of num_generations"):
        grpo_config(_tc(num_generations=3, per_device_train_batch_size=8), tmp_path)


@pytest.mark.slow
def test_darling_trains_on_the_toy(toy_model_dir, tmp_path):
    """--method darling runs real TRL steps with the partition-diversity reward (no std scaling, token loss)."""
    import dataclasses

    from divtune.train.trainer import train

    cfg = load_config("toy-darling")
    assert cfg.train.scale_rewards == "none" and cfg.train.loss_type == "dapo"
    rows = [e.to_row() for e in synthesize_lists(10, 0, cfg.data.categories)]
    tc = dataclasses.replace(_tc(method="darling", max_steps=2, loss_type="dapo", scale_rewards="none"),
                             darling=cfg.train.darling)
    res = train(toy_model_dir, rows, tc, tmp_path / "a", tmp_path / "ckpt")
    assert res.global_step == 2 and (tmp_path / "a" / "adapter_model.safetensors").is_file()
