"""Checking a config: per-field bounds from the schema's metadata, then the rules that tie fields together.

:func:`validate_section` walks a dataclass tree and checks each field against the bounds declared next to it
(``min``, ``max``, ``max_exclusive``, ``gt``, ``nonempty``; every float finite).  :func:`validate_config` does
that for a whole :class:`~divtune.config.schema.PipelineConfig` and then applies :data:`RULES`, the few
cross-field rules that one field's bounds cannot say.  The first problem found is a one-line
:class:`~divtune.errors.ConfigError` naming the key, e.g. ``train.max_steps must be >= 1, got 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from divtune.errors import short as _short
from divtune.config.schema import PipelineConfig
from divtune.errors import ConfigError

__all__ = ["RULES", "SUITES", "bounds_text", "check_number", "validate_config", "validate_section"]

SUITES = ("lists", "open_set", "creative", "benchmarks", "novelty")
"""The evaluation suites ``evaluate.suites`` may name."""

_BOUND_KEYS = ("min", "max", "gt")


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# --------------------------------------------------------------------------------------
# Per-field bounds
# --------------------------------------------------------------------------------------


def bounds_text(meta: Mapping[str, Any], *, integer: bool) -> str | None:
    """The numeric bounds in ``meta`` as the words after "must be" (``>= 1``, ``in [0, 1)``, ``in 0..3``)."""
    lo, gt, hi, excl = meta.get("min"), meta.get("gt"), meta.get("max"), bool(meta.get("max_exclusive"))
    if hi is not None and (lo is not None or gt is not None):
        if integer and lo is not None and not excl:
            return f"in {lo}..{hi}"
        left = f"[{lo}" if lo is not None else f"({gt}"
        return f"in {left}, {hi}{')' if excl else ']'}"
    if lo is not None:
        return f">= {lo}"
    if gt is not None:
        return f"> {gt}"
    if hi is not None:
        return f"< {hi}" if excl else f"<= {hi}"
    return None


def _within(value: int | float, meta: Mapping[str, Any]) -> bool:
    lo, gt, hi = meta.get("min"), meta.get("gt"), meta.get("max")
    if lo is not None and value < lo:
        return False
    if gt is not None and value <= gt:
        return False
    if hi is not None and (value >= hi if meta.get("max_exclusive") else value > hi):
        return False
    return True


def _scalar_type(tp: Any) -> Any:
    """``int`` for ``int``, ``int | None`` and ``list[int]``; the type itself otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return _scalar_type(rest[0]) if len(rest) == 1 else tp
    if origin is list:
        return _scalar_type(typing.get_args(tp)[0])
    return tp


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_number(value: Any, meta: Mapping[str, Any], label: str, *, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{label} must be a number, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, got {_short(value)}")
    if not _within(value, meta):
        raise ConfigError(f"{label} must be {bounds_text(meta, integer=integer)}, got {_short(value)}")


def _check_field(value: Any, meta: Mapping[str, Any], label: str, *, integer: bool) -> None:
    bounded = any(meta.get(k) is not None for k in _BOUND_KEYS)
    if value is None:
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if dataclasses.is_dataclass(item):
                validate_section(item, f"{label}[{i}]")
            elif bounded or isinstance(item, float):
                check_number(item, meta, f"{label}[{i}]", integer=integer)
        return
    if bounded or isinstance(value, float):
        check_number(value, meta, label, integer=integer)
    if meta.get("nonempty") and isinstance(value, str) and not value.strip():
        raise ConfigError(f"{label} must not be empty")


def validate_section(obj: Any, prefix: str) -> None:
    """Check every field of dataclass ``obj`` (and the dataclasses inside it) against its declared bounds.

    ``prefix`` names ``obj`` in messages (``train``, ``images``); ``""`` is the config root, whose own scalar
    fields are called ``config.<name>``.
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate_section(value, key)
            continue
        integer = _scalar_type(hints[f.name]) is int
        _check_field(value, f.metadata, key if prefix else f"config.{key}", integer=integer)


# --------------------------------------------------------------------------------------
# Cross-field rules (each docstring is its line in docs/config.md)
# --------------------------------------------------------------------------------------


def _name_is_plain(cfg: PipelineConfig) -> None:
    """`name` has no `/` or `\\`: it names checkpoint directories."""
    _need(not any(c in cfg.name for c in "/\\\0"),
          f"config.name must not contain '/' or '\\' (it names checkpoint directories), got {_short(cfg.name)}")


def _list_lengths(cfg: PipelineConfig) -> None:
    """`data.min_len` <= `data.max_len`."""
    _need(cfg.data.min_len <= cfg.data.max_len, "data.min_len must be >= 2 and <= data.max_len")


def _group_size(cfg: PipelineConfig) -> None:
    """`train.num_generations` >= 2 for every method but `sft` (a group needs two completions), >= 1 for `sft`."""
    t = cfg.train
    least = 1 if t.method == "sft" else 2
    _need(t.num_generations >= least, f"train.num_generations must be >= {least}, got {t.num_generations}")


def _lora_layers(cfg: PipelineConfig) -> None:
    """`train.lora.layers_to_transform` needs `train.lora.target_modules` as a list of module names."""
    lora = cfg.train.lora
    _need(lora.layers_to_transform is None or isinstance(lora.target_modules, list),
          "train.lora.layers_to_transform needs train.lora.target_modules as a list of module names")


def _partition_correct_only(cfg: PipelineConfig) -> None:
    """`train.darling.partition_correct_only` needs quality `math` or `list_validity`."""
    dc = cfg.train.darling
    _need(not dc.partition_correct_only or dc.quality in ("math", "list_validity"),
          "train.darling.partition_correct_only needs a correct/incorrect quality (math, list_validity)")


def _darling_quality_task(cfg: PipelineConfig) -> None:
    """With `train.method: darling`, `train.darling.quality` fits `data.task`: `math` needs `math`,
    `reward_model` needs `prompts` or `math`, `list_validity` needs `lists`."""
    if cfg.train.method != "darling":  # the quality reads its dataset column: answer (math), question, items
        return
    q, task = cfg.train.darling.quality, cfg.data.task
    _need(q != "math" or task == "math", f"train.darling.quality math needs data.task math (got {_short(task)})")
    _need(q != "reward_model" or task in ("math", "prompts"),
          f"train.darling.quality reward_model needs data.task prompts or math: a question column "
          f"(got {_short(task)})")
    _need(q != "list_validity" or task == "lists",
          f"train.darling.quality list_validity needs data.task lists (got {_short(task)})")


def _suites(cfg: PipelineConfig) -> None:
    """`evaluate.suites` names at least one suite, each of `lists`, `open_set`, `creative`, `benchmarks`, `novelty`."""
    e = cfg.evaluate
    _need(bool(e.suites), "evaluate.suites must name at least one suite")
    for suite in e.suites:
        _need(suite in SUITES, f"evaluate.suites: unknown suite {_short(suite)} (known: {', '.join(SUITES)})")


def _benchmarks_data(cfg: PipelineConfig) -> None:
    """Suite `benchmarks` needs `evaluate.benchmarks_data`."""
    e = cfg.evaluate
    _need("benchmarks" not in e.suites or bool(e.benchmarks_data),
          "evaluate.suites has benchmarks: set evaluate.benchmarks_data (a directory or s3:// prefix)")


def _novelty_prompts(cfg: PipelineConfig) -> None:
    """Suite `novelty` needs `evaluate.novelty.prompts`; its `classifier` partitioner a `partitioner_path`, its
    `reward_model` quality a `reward_model_path`."""
    e, n = cfg.evaluate, cfg.evaluate.novelty
    if "novelty" not in e.suites:
        return
    _need(bool(n.prompts), "evaluate.suites has novelty: set evaluate.novelty.prompts (a JSONL prompts file)")
    _need(n.partitioner != "classifier" or bool(n.partitioner_path),
          "evaluate.novelty.partitioner classifier needs evaluate.novelty.partitioner_path")
    _need(n.quality != "reward_model" or bool(n.reward_model_path),
          "evaluate.novelty.quality reward_model needs evaluate.novelty.reward_model_path")


def _humaneval(cfg: PipelineConfig) -> None:
    """Benchmark `humaneval` (it runs model-written code) needs `evaluate.allow_code_execution`."""
    e = cfg.evaluate
    _need("humaneval" not in e.benchmarks_tasks or e.allow_code_execution or "benchmarks" not in e.suites,
          "evaluate.benchmarks_tasks has humaneval: it runs model-written code, set evaluate.allow_code_execution")


def _trainjob(cfg: PipelineConfig) -> None:
    """A TrainJob (`cluster.train_nodes` > 1 or `cluster.train_distributed: trainjob`) needs
    `cluster.train_gpus` >= 1 and `cluster.cache_pvc`."""
    c = cfg.cluster
    if not c.uses_trainjob:
        return
    _need(c.train_gpus >= 1, "a TrainJob (cluster.train_nodes > 1 or cluster.train_distributed: trainjob) "
                             "needs cluster.train_gpus >= 1 (GPUs per node)")
    _need(bool(c.cache_pvc), "a TrainJob needs cluster.cache_pvc (a ReadWriteMany PVC shared by the pipeline "
                             "step and the training nodes)")


def _secrets(cfg: PipelineConfig) -> None:
    """Each `cluster.secrets[]` entry has a `name` and at least one key."""
    _need(all(s.name and s.keys for s in cfg.cluster.secrets), "cluster.secrets entries need a name and keys")


def _models_uri(cfg: PipelineConfig) -> None:
    """`storage.models_uri` is an `s3://` URI."""
    uri = cfg.storage.models_uri
    _need(uri is None or uri.startswith("s3://"), "storage.models_uri must be an s3:// URI")


def _model_source(cfg: PipelineConfig) -> None:
    """`model.source: path` needs `model.path`; `model.source: hub` needs `model.hub_id`."""
    m = cfg.model
    if m.source == "path":
        _need(bool(m.path), "model.path is required when model.source is 'path'")
    if m.source == "hub":
        _need(bool(m.hub_id), "model.hub_id is required when model.source is 'hub'")


_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes object name (RFC 1123 subdomain)
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # what Kubernetes accepts as an env var name


def _registry_names(cfg: PipelineConfig) -> None:
    """`registry.model_name` is a name MLflow's registry accepts: no `/` or `:`, not a path (`.`/`..` parts),
    at most 256 characters."""
    name = cfg.registry.model_name
    _need(not any(c in name for c in "/:"), f"registry.model_name {_short(name)}: MLflow forbids '/' and ':' in names")
    _need(name.strip(".") != "" and ".." not in name and len(name) <= 256,
          f"registry.model_name {_short(name)}: not a valid MLflow registered-model name")
    _need(len(cfg.registry.experiment) <= 500, "registry.experiment is longer than MLflow's 500 characters")


def _kubernetes_names(cfg: PipelineConfig) -> None:
    """Names the cluster section hands Kubernetes are valid there: the cache PVC, Secrets and image pull
    Secrets (RFC 1123, at most 253 characters), node-selector and toleration keys (label keys), env names."""
    c = cfg.cluster
    names = [("cluster.cache_pvc", c.cache_pvc)] if c.cache_pvc else []
    names += [(f"cluster.secrets[{i}].name", s.name) for i, s in enumerate(c.secrets)]
    names += [(f"cluster.image_pull_secrets[{i}]", n) for i, n in enumerate(c.image_pull_secrets)]
    for key, name in names:
        _need(len(name) <= 253 and bool(_DNS1123.match(name)),
              f"{key} {_short(name)} is not a Kubernetes name (lower-case letters, digits, '-' and '.')")
    for key in list(c.node_selector) + [t.key for t in c.tolerations]:
        _need(len(key) <= 316 and bool(_LABEL_KEY.match(key)), f"cluster: {_short(key)} is not a Kubernetes label key")
    envs = list(c.env) + [e for s in c.secrets for e in s.keys.values()]
    for name in envs:
        _need(bool(_ENV_NAME.match(name)), f"cluster: {_short(name)} is not a valid environment variable name")


def _vllm_server(cfg: PipelineConfig) -> None:
    """`train.vllm_mode: server` is refused with `train.use_vllm`: divtune launches no `trl vllm-serve` yet, and
    TRL would wait for one forever; `colocate` runs generation in the training process."""
    t = cfg.train
    _need(not (t.use_vllm and t.vllm_mode == "server"),
          "train.vllm_mode server: divtune launches no vLLM server (trl vllm-serve) for training; use colocate")


def _vllm_tensor_parallel(cfg: PipelineConfig) -> None:
    """`train.vllm_tensor_parallel_size` > 1 needs colocated vLLM (`train.use_vllm`, `vllm_mode: colocate`) and
    divides `cluster.train_gpus` (an engine spans GPUs of one node; TRL needs it to divide the world size)."""
    t, c = cfg.train, cfg.cluster
    tp = t.vllm_tensor_parallel_size
    if tp == 1:
        return
    _need(t.use_vllm and t.vllm_mode == "colocate",
          f"train.vllm_tensor_parallel_size {tp} needs train.use_vllm with train.vllm_mode colocate")
    _need(c.train_gpus == 0 or c.train_gpus % tp == 0,
          f"train.vllm_tensor_parallel_size {tp} must divide cluster.train_gpus ({c.train_gpus})")


RULES: tuple[Callable[[PipelineConfig], None], ...] = (
    _name_is_plain, _list_lengths, _group_size, _lora_layers, _partition_correct_only, _darling_quality_task,
    _suites, _benchmarks_data, _novelty_prompts, _humaneval, _trainjob, _secrets, _models_uri, _model_source,
    _registry_names, _kubernetes_names, _vllm_server, _vllm_tensor_parallel,
)
"""The cross-field rules, applied in this order after the per-field bounds."""


def validate_config(cfg: PipelineConfig) -> None:
    """Raise a one-line :class:`ConfigError` for the first out-of-bounds field or broken rule of ``cfg``."""
    validate_section(cfg, "")
    for rule in RULES:
        rule(cfg)
