"""The config schema: every field documented and bounded, the reference generated from it, presets loading."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import typing
from pathlib import Path

import pytest

from divtune.config import (
    ClusterConfig,
    PipelineConfig,
    TrainConfig,
    config_from_yaml_text,
    configs_dir,
    list_presets,
    load_config,
    load_images,
)
from divtune.config import schema
from divtune.errors import short as _short
from divtune.config.reference import render_reference
from divtune.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _leaves(cls: type = PipelineConfig, prefix: str = ""):
    """(dotted key, type, metadata) of every scalar-ish field reachable through nested sections."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], key)
        else:
            yield key, hints[f.name], f.metadata


def _schema_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(schema, inspect.isclass)
            if dataclasses.is_dataclass(c) and c.__module__ == schema.__name__]


FLOAT_KEYS = [k for k, tp, _ in _leaves() if tp is float]
COUNT_KEYS = [(k, meta["min"]) for k, tp, meta in _leaves() if tp in (int, int | None) and (meta.get("min") or 0) >= 1]


# --------------------------------------------------------------------------------------
# The schema documents itself
# --------------------------------------------------------------------------------------


def test_docs_config_md_is_generated_from_the_schema():
    doc = (REPO / "docs" / "config.md").read_text()
    assert doc == render_reference(), "regenerate: python -m divtune.config.reference > docs/config.md"


@pytest.mark.parametrize("cls", _schema_classes(), ids=lambda c: c.__name__)
def test_every_field_has_help_and_every_section_a_docstring(cls):
    assert cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("), f"{cls.__name__} has no docstring"
    for f in dataclasses.fields(cls):
        assert str(f.metadata.get("help", "")).strip(), f"{cls.__name__}.{f.name} has no help"


def test_schema_classes_are_all_listed():
    assert set(_schema_classes()) == set(schema.SECTIONS)


def test_reference_has_a_row_per_key():
    doc = render_reference()
    for key, _, _ in _leaves():
        assert f"| `{key}` |" in doc, key
    assert "| `cluster.tolerations[].effect` |" in doc and "| `images.tag` |" in doc


def test_loss_type_matches_trl_grpo_config():
    src = Path(importlib.util.find_spec("trl").origin).parent / "trainer" / "grpo_config.py"
    m = re.search(r"Supported values are (.*?)\. ", src.read_text().replace('"\n            "', ""))
    assert m, "TRL's GRPOConfig no longer lists its loss types"
    assert set(re.findall(r"'(\w+)'", m.group(1))) == set(typing.get_args(schema.LossType))


def test_toy_model_config_is_gone_and_open_set_is_not_a_data_task():
    assert not hasattr(schema, "ToyModelConfig")
    assert "toy" not in {f.name for f in dataclasses.fields(schema.ModelConfig)}
    with pytest.raises(ConfigError, match="unknown key config.model.toy"):
        load_config("toy", overrides=["model.toy={seed: 1}"])
    with pytest.raises(ConfigError, match="config.data.task must be one of 'lists', 'math', 'prompts'"):
        load_config("toy", overrides=["data.task=open_set"])


def test_uses_trainjob_property():
    assert not ClusterConfig().uses_trainjob
    assert ClusterConfig(train_nodes=2).uses_trainjob
    assert ClusterConfig(train_distributed="trainjob").uses_trainjob


# --------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [".inf", "-.inf", ".nan", "nan", "inf", "1" + "0" * 400])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_floats_are_refused(key, raw):
    with pytest.raises(ConfigError, match=rf"config\.{re.escape(key)} must be a finite number"):
        load_config("toy", overrides=[f"{key}={raw}"])


def test_non_finite_float_set_in_python_is_refused_by_validate():
    cfg = PipelineConfig(train=TrainConfig(learning_rate=float("nan")))
    with pytest.raises(ConfigError, match="train.learning_rate must be a finite number, got nan"):
        cfg.validate()


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("key,least", COUNT_KEYS, ids=[k for k, _ in COUNT_KEYS])
def test_zero_and_negative_counts_are_refused(key, least, value):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} must be >= {least}, got {value}$"):
        load_config("toy", overrides=[f"{key}={value}"])


@pytest.mark.parametrize("override,msg", [
    ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
    ("train.num_generations=1", "train.num_generations must be >= 2, got 1"),
    ("train.learning_rate=0", "train.learning_rate must be > 0, got 0.0"),
    ("train.beta=-0.5", "train.beta must be >= 0, got -0.5"),
    ("train.lora.dropout=1", "train.lora.dropout must be in [0, 1), got 1.0"),
    ("train.vllm_gpu_memory_utilization=0", "train.vllm_gpu_memory_utilization must be in (0, 1], got 0.0"),
    ("train.darling.threshold=1.5", "train.darling.threshold must be in [0, 1], got 1.5"),
    ("train.darling.partitioner_max_length=4", "train.darling.partitioner_max_length must be >= 8, got 4"),
    ("data.few_shot=4", "data.few_shot must be in 0..3, got 4"),
    ("data.min_len=1", "data.min_len must be >= 2, got 1"),
    ("data.min_len=13", "data.min_len must be >= 2 and <= data.max_len"),
    ("gate.max_invalid_rate=-0.1", "gate.max_invalid_rate must be in [0, 1], got -0.1"),
    ("cluster.train_gpus=-1", "cluster.train_gpus must be >= 0, got -1"),
    ("evaluate.seed=-1", "evaluate.seed must be >= 0, got -1"),
    ("train.steps_per_generation=0", "train.steps_per_generation must be >= 1, got 0"),
    ("name=''", "config.name must not be empty"),
    ("name=a/b", "config.name must not contain '/'"),
    ("registry.model_name='  '", "registry.model_name must not be empty"),
    ("model.path=''", "model.path must not be empty"),
    ("cluster.cache_pvc=''", "cluster.cache_pvc must not be empty"),
    ("train.loss_type=ppo", "config.train.loss_type must be one of 'grpo', 'dr_grpo', 'dapo'"),
    ("cluster.env={PORT: 5000}", "config.cluster.env.PORT must be a string, got 5000"),
])
def test_bounds(override, msg):
    with pytest.raises(ConfigError) as exc:
        load_config("toy", overrides=[override])
    assert msg in str(exc.value)


def test_bounds_apply_to_each_list_element():
    with pytest.raises(ConfigError, match=r"train\.lora\.layers_to_transform\[1\] must be >= 0, got -1"):
        load_config("toy", overrides=["train.lora.layers_to_transform=[0, -1]", "train.lora.target_modules=[q_proj]"])


def test_sft_takes_a_group_of_one_and_every_trl_loss_type_loads():
    assert load_config("toy", overrides=["train.method=sft", "train.num_generations=1"]).train.num_generations == 1
    for loss in typing.get_args(schema.LossType):
        assert load_config("toy", overrides=[f"train.loss_type={loss}"]).train.loss_type == loss


def test_images_are_checked(tmp_path, monkeypatch):
    (tmp_path / "images.yaml").write_text("tag: ''\n")
    monkeypatch.setenv("DIVTUNE_CONFIGS", str(tmp_path))
    with pytest.raises(ConfigError, match="images.tag must not be empty"):
        load_images()


# --------------------------------------------------------------------------------------
# Echoed values are short and one line
# --------------------------------------------------------------------------------------


def test_short_cuts_values_to_one_short_line():
    assert _short("abc") == "'abc'"
    long = _short({"k": "line\n" * 100, "x": list(range(100))})
    assert len(long) <= 80 and "\n" not in long and long.endswith("…")
    assert _short("x" * 500, use_repr=False) == "x" * 79 + "…"


def test_long_bad_values_are_cut_in_messages(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config("toy", overrides=["train.method=" + "y" * 5000])
    assert len(str(exc.value)) < 200 and "\n" not in str(exc.value)
    p = tmp_path / "c.yaml"
    p.write_text("preset: toy\ntrain:\n  method: |\n" + "    many\n" * 500)
    with pytest.raises(ConfigError) as exc:
        load_config(path=p)
    assert len(str(exc.value)) < 200 and "\n" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_config("p" * 3000)
    assert "unknown preset" in str(exc.value) and "p" * 100 not in str(exc.value)


# --------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------


def test_configs_dir_is_the_repository_configs(monkeypatch):
    monkeypatch.delenv("DIVTUNE_CONFIGS", raising=False)
    assert configs_dir() == REPO / "configs"


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_loads_and_round_trips(preset):
    cfg = load_config(preset)
    assert config_from_yaml_text(cfg.to_yaml()) == cfg


def test_presets_found():
    assert {"toy", "toy-darling", "smollm2-135m"} <= set(list_presets())


def test_preset_naming_itself_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text("preset: a\nname: a\n")
    monkeypatch.setenv("DIVTUNE_CONFIGS", str(tmp_path))
    with pytest.raises(ConfigError, match="preset 'a' names itself as its base"):
        load_config("a")


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c"]])
def test_preset_cycle_is_a_config_error_not_recursion(tmp_path, monkeypatch, names):
    for here, base in zip(names, names[1:] + names[:1]):
        (tmp_path / f"{here}.yaml").write_text(f"preset: {base}\nname: {here}\n")
    monkeypatch.setenv("DIVTUNE_CONFIGS", str(tmp_path))
    cycle = " -> ".join(f"'{n}'" for n in [*names, names[0]])
    with pytest.raises(ConfigError, match=re.escape(f"cycle: {cycle}")):
        load_config(names[0])
    user = tmp_path / "mine.yaml"
    user.write_text(f"preset: {names[-1]}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(path=user)


def test_preset_chain_without_cycle_merges(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("name: base\ntrain:\n  max_steps: 3\n  seed: 5\n")
    (tmp_path / "mid.yaml").write_text("preset: base\ntrain:\n  max_steps: 4\n")
    (tmp_path / "top.yaml").write_text("preset: mid\nname: top\n")
    monkeypatch.setenv("DIVTUNE_CONFIGS", str(tmp_path))
    cfg = load_config("top")
    assert (cfg.name, cfg.train.max_steps, cfg.train.seed) == ("top", 4, 5)


@pytest.mark.parametrize("name", ["../configs/toy", "images", "", "a\0b"])
def test_odd_preset_names_are_unknown(name):
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(name)


def test_unknown_keys_of_mixed_types_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("preset: toy\n1: x\nzz: y\n")
    with pytest.raises(ConfigError, match="unknown key config.1 "):
        load_config(path=p)
