"""Typed presets, typed overrides and config files (the CLI's bad-input rows: tests/test_bad_input_table.py)."""

from __future__ import annotations

import pytest

from divtune.config import PipelineConfig, config_from_yaml_text, list_presets, load_config
from divtune.errors import ConfigError


def test_toy_preset_loads_and_round_trips():
    cfg = load_config("toy")
    assert isinstance(cfg, PipelineConfig) and cfg.model.source == "toy" and cfg.train.method == "gapo"
    assert config_from_yaml_text(cfg.to_yaml()) == cfg
    assert "toy" in list_presets() and "images" not in list_presets()


def test_overrides_are_typed():
    cfg = load_config("toy", overrides=["train.max_steps=7", "train.learning_rate=3e-4"])
    assert cfg.train.max_steps == 7 and cfg.train.learning_rate == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config("toy", overrides=["train.max_steps=many"])
    with pytest.raises(ConfigError, match="unknown key config.train.nope"):
        load_config("toy", overrides=["train.nope=1"])


def test_config_file_with_base_preset(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("preset: toy\ntrain:\n  max_steps: 3\n")
    cfg = load_config(path=p)
    assert cfg.train.max_steps == 3 and cfg.model.source == "toy"


@pytest.mark.parametrize("content,msg", [
    ("train: [1, 2\n", "not valid YAML"),
    ("", "is empty"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("preset: toy\ntrain:\n  method: ppo\n", "train.method must be one of"),
    ("preset: toy\ntrain:\n  max_steps: 0\n", "train.max_steps must be >= 1"),
    ("preset: toy\nmodel:\n  source: path\n", "model.path is required"),
])
def test_malformed_config_files(tmp_path, content, msg):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=msg):
        load_config(path=p)
