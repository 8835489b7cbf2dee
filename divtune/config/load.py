"""Loading configs: presets, YAML files, deep merge, ``key.sub=value`` overrides, strict conversion.

A file may start from a preset (``preset: toy``); a preset may itself name a base preset.  Unknown keys and
wrong types are :class:`~divtune.errors.ConfigError` naming the key; ranges are checked by
:mod:`divtune.config.validate` once the whole config is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from divtune import files
from divtune.errors import short as _short
from divtune.config.schema import ImagesConfig, PipelineConfig
from divtune.errors import ConfigError

__all__ = ["config_from_yaml_text", "configs_dir", "from_dict", "list_presets", "load_config", "load_images"]


def load_images() -> ImagesConfig:
    """The one place every component's ``base_image`` comes from: ``configs/images.yaml``."""
    from divtune.config.validate import validate_section

    p = configs_dir() / "images.yaml"
    if not p.is_file():
        return ImagesConfig()
    images = from_dict(ImagesConfig, _read_yaml(p), where="images")
    validate_section(images, "images")
    return images


def configs_dir() -> Path:
    """Where presets and ``images.yaml`` live: ``$DIVTUNE_CONFIGS``; else a source checkout's top-level
    ``configs/``; else the copy installed with the package (``<prefix>/share/divtune/configs``, pyproject's
    data-files), as in the images."""
    env = os.environ.get("DIVTUNE_CONFIGS")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]  # divtune/config/load.py -> <repo> (or site-packages)
    repo = root / "configs"
    if (root / "pyproject.toml").is_file() and repo.is_dir():
        return repo
    import sys
    import sysconfig

    prefixes = [sysconfig.get_path("data"), sys.prefix, sysconfig.get_path("data", f"{os.name}_user")]
    for prefix in dict.fromkeys(prefixes):
        installed = Path(prefix) / "share" / "divtune" / "configs"
        if installed.is_dir():
            return installed
    return repo


def list_presets() -> list[str]:
    d = configs_dir()
    return sorted(p.stem for p in d.glob("*.yaml") if p.stem != "images") if d.is_dir() else []


def load_config(
    preset: str | None = None,
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
) -> PipelineConfig:
    """Build a config from a preset and/or a YAML file, then ``key.sub=value`` overrides.

    A file may name its own starting preset with a top-level ``preset:`` key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        file_data = _read_yaml(Path(path))
        base = file_data.pop("preset", None)
        if preset is None and base is not None:
            preset = str(base)
        if preset is not None:
            data = _deep_merge(_read_preset(preset), file_data)
        else:
            data = file_data
    elif preset is not None:
        data = _read_preset(preset)
    for item in overrides or []:
        _apply_override(data, item)
    cfg = from_dict(PipelineConfig, data, where="config")
    return cfg.validate()


def config_from_yaml_text(text: str) -> PipelineConfig:
    """Parse a config serialised with :meth:`PipelineConfig.to_yaml` (what components receive)."""
    data = files.load_yaml(text, where="config", error=ConfigError)
    if not isinstance(data, dict):
        raise ConfigError("config must be a YAML mapping")
    return from_dict(PipelineConfig, data, where="config").validate()


# --------------------------------------------------------------------------------------
# Presets and files
# --------------------------------------------------------------------------------------


def _is_preset_name(name: str) -> bool:
    return bool(name) and name not in (".", "..", "images") and not any(c in name for c in "/\\\0")


def _read_preset(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The preset's mapping merged over its base presets; ``chain``: the presets that led here."""
    if name in chain:
        if chain[-1] == name:
            raise ConfigError(f"preset {_short(name)} names itself as its base")
        cycle = " -> ".join(_short(n) for n in (*chain[chain.index(name):], name))
        raise ConfigError(f"presets name each other as base in a cycle: {cycle}")
    p = configs_dir() / f"{name}.yaml"
    if not _is_preset_name(name) or not _is_file(p):
        known = ", ".join(list_presets()) or "none found"
        raise ConfigError(f"unknown preset {_short(name)} (known presets: {known})")
    data = _read_yaml(p)
    base = data.pop("preset", None)
    if base is not None:
        data = _deep_merge(_read_preset(str(base), (*chain, name)), data)
    return data


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # e.g. a name too long for the file system, a NUL byte
        return False


def _read_yaml(p: Path) -> dict[str, Any]:
    try:
        exists = p.exists()
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise ConfigError(f"config file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"config path is not a file: {p}")
    text = files.read_text(p, noun="config", max_mb=files.limit("INPUT_MB"), error=ConfigError)
    data = files.load_yaml(text, where=f"config file {p}", error=ConfigError)
    if data is None:
        raise ConfigError(f"config file {p} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must be a YAML mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {_short(item)} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {_short(item)} has an empty key part")
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError):
        value = raw
    files.check_structure(value, where=f"override {_short(key)}", error=ConfigError)
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {_short(item)}: {_short(p)} is not a section")
    node[parts[-1]] = value


# --------------------------------------------------------------------------------------
# Strict dataclass conversion
# --------------------------------------------------------------------------------------

T = typing.TypeVar("T")


def from_dict(cls: type[T], data: Any, *, where: str) -> T:
    """Convert a mapping to dataclass ``cls``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted((k for k in data if k not in names), key=str)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{_short(unknown[0], use_repr=False)} (allowed: {', '.join(sorted(names))})"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where} has an invalid value {_short(value)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {_short(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, f"{where} key {_short(k)}"): _convert(vt, v, f"{where}.{_short(k, use_repr=False)}")
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {_short(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_short(value)}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # pragma: no cover
