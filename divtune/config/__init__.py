"""Typed configuration: dataclasses loaded from YAML presets, validated strictly.

A run is described by one :class:`PipelineConfig`.  Presets live in ``configs/<name>.yaml``;
a user file may start from a preset (``preset: toy``) and override any field.  Unknown keys,
wrong types and out-of-range values are :class:`~divtune.errors.ConfigError` with a message
naming the offending key.

- :mod:`divtune.config.schema`: the dataclasses, each field's help and bounds;
- :mod:`divtune.config.load`: presets, files, merging, overrides, strict conversion;
- :mod:`divtune.config.validate`: bounds checking and the cross-field rules;
- :mod:`divtune.config.reference`: ``docs/config.md``, generated from the schema.
"""

from divtune.config.load import config_from_yaml_text, configs_dir, from_dict, list_presets, load_config, load_images
from divtune.config.schema import (
    ClusterConfig,
    DarlingConfig,
    DataConfig,
    EvalConfig,
    GateConfig,
    ImagesConfig,
    LoraConfig,
    ModelConfig,
    PipelineConfig,
    RegistryConfig,
    SecretEnvConfig,
    StorageConfig,
    TolerationConfig,
    TrainConfig,
)
from divtune.config.validate import validate_config

__all__ = [
    "ClusterConfig",
    "DarlingConfig",
    "DataConfig",
    "EvalConfig",
    "GateConfig",
    "ImagesConfig",
    "LoraConfig",
    "ModelConfig",
    "PipelineConfig",
    "RegistryConfig",
    "SecretEnvConfig",
    "StorageConfig",
    "TolerationConfig",
    "TrainConfig",
    "config_from_yaml_text",
    "configs_dir",
    "from_dict",
    "list_presets",
    "load_config",
    "load_images",
    "validate_config",
]
