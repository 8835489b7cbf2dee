"""Training through TRL on the toy: real steps, live diversity metrics, resume from a checkpoint."""

from __future__ import annotations

import json

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


def test_training_resumes_from_the_last_complete_checkpoint(tiny_gapo, toy_model_dir, tmp_path):
    """A kill while the Trainer saves leaves checkpoint-N without trainer_state.json (written last) or with a
    torn one: training resumes from the newest *complete* checkpoint, keeps the history logged up to it, and
    trains only the steps after it (the session's 2-step GAPO run, killed while saving step 3). The whole
    pipeline killed mid-run: tests/test_faults.py."""
    import dataclasses
    import shutil

    from divtune.train.trainer import last_checkpoint, train

    odd = tmp_path / "odd"
    assert last_checkpoint(odd) is None
    for step in (2, 4):
        d = odd / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "adapter_model.safetensors").write_bytes(b"w")
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (odd / "checkpoint-6").mkdir()
    (odd / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"w")  # killed before trainer_state.json
    (odd / "checkpoint-10").mkdir()
    (odd / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 1')  # killed mid-write
    (odd / "checkpoint-x").mkdir()
    assert last_checkpoint(odd) == str(odd / "checkpoint-4")

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_gapo.checkpoints, ckpt)
    assert {p.name for p in ckpt.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}
    half = ckpt / "checkpoint-3"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"half")  # step 3 was being saved when the kill came
    assert last_checkpoint(ckpt) == str(ckpt / "checkpoint-2")
    cfg = tiny_gapo.cfg
    res = train(toy_model_dir, tiny_gapo.rows, dataclasses.replace(cfg.train, max_steps=3), tmp_path / "adapter", ckpt,
                dtype=cfg.model.dtype, system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    assert res.resumed_from == str(ckpt / "checkpoint-2") and res.global_step == 3
    before = json.loads((tiny_gapo.checkpoints / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    after = json.loads((ckpt / "checkpoint-3" / "trainer_state.json").read_text())
    assert after["global_step"] == 3 and [e["step"] for e in after["log_history"] if "loss" in e] == [1, 2, 3]
    assert after["log_history"][:len(before)] == before  # steps 1-2 come from the checkpoint, not trained again
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


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
