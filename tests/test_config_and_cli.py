"""Typed presets and the CLI's bad-input contract: one line, exit code 2, nothing registered."""

from __future__ import annotations

import pytest

from conftest import run_cli
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


def _registered_models():
    from divtune.registry import tracking

    return [m.name for m in tracking.client().search_registered_models()]


@pytest.mark.parametrize("args,needle", [
    (["run", "--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
    (["run", "--config", "/nonexistent/cfg.yaml"], "config file not found"),
    (["run", "--set", "model.source=path", "--set", "model.path=/nonexistent/model"], "model path does not exist"),
    (["run", "--set", "train.method=bogus"], "train.method must be one of"),
    (["compile", "--preset", "no-such-preset"], "unknown preset"),
    (["evaluate", "lists", "--model", "/nonexistent/model"], "model path does not exist"),
    (["evaluate", "lists", "--model", "models:/no-such-model@champion"], "does not exist"),
    (["train", "--data", "/nonexistent.jsonl", "-o", "/tmp/x"], "dataset file not found"),
    (["registry", "show", "--name", "no-such-model"], "registered model 'no-such-model' does not exist"),
])
def test_bad_input_one_line_exit_2_nothing_registered(args, needle):
    before = _registered_models()
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("divtune: error:")]
    assert len(lines) == 1 and needle in lines[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert _registered_models() == before


def test_malformed_config_file_via_cli(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: {max_steps: [\n")
    res = run_cli("run", "--config", str(p))
    assert res.returncode == 2 and "not valid YAML" in res.stderr and "Traceback" not in res.stderr


def test_corrupted_model_dir_via_cli(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{broken")
    res = run_cli("run", "--set", "model.source=path", "--set", f"model.path={d}")
    assert res.returncode == 2 and "corrupted config.json" in res.stderr
