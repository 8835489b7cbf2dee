"""Post-training with TRL: GAPO / DARLING / GRPO through ``GRPOTrainer``, the SFT baseline through
``SFTTrainer``; LoRA through peft; live metrics to the active MLflow run; resumable checkpoints.

Under torchrun (a TrainJob) every process trains on its own device (``cuda:LOCAL_RANK``, or CPU with gloo), the
group reward scores each group on one rank (:mod:`divtune.rewards.trl_adapter`), and global rank 0 logs into
the run named by ``MLFLOW_RUN_ID``.  ``DIVTUNE_ROW_SEEDED_SAMPLING=1`` draws every rollout from its own seeded
stream (:class:`RowSeededSampler`), so the same seed trains the same adapter on any number of processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divtune.config import TrainConfig
from divtune.data.prompting import to_messages
from divtune.errors import ConfigError, DivtuneError


@dataclass
class TrainResult:
    adapter_dir: Path
    global_step: int
    resumed_from: str | None
    metrics: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Rewards and data
# --------------------------------------------------------------------------------------


def group_reward_for(tc: TrainConfig, device: str | None = None):
    """The group reward a method trains with; ``device``: where DARLING's partitioner model runs."""
    from divtune.rewards.lists import FrequencyAwareReward, ValidityReward

    if tc.method == "gapo":
        return FrequencyAwareReward()
    if tc.method == "grpo":
        return ValidityReward()
    if tc.method == "darling":
        from divtune.rewards.darling import build_darling_reward

        return build_darling_reward(tc.darling, device=device)
    raise ConfigError(f"method {tc.method!r} has no group reward")


def rl_dataset(rows: Sequence[dict[str, Any]], system_prompt: str | None = None, few_shot: int = 0):
    """TRL dataset: ``prompt`` (chat messages), ``group_id`` and the reward's metadata columns."""
    from datasets import Dataset

    if not rows:
        raise DivtuneError("the training dataset is empty")
    return Dataset.from_list([{**r, "prompt": to_messages(r["prompt"], system_prompt, few_shot)} for r in rows])


def sft_dataset(rows: Sequence[dict[str, Any]], system_prompt: str | None = None, few_shot: int = 0):
    """Appendix G teacher forcing: one (prompt, completion) row for every valid item of every list."""
    from datasets import Dataset

    out = []
    for r in rows:
        for item in r["items"]:
            out.append({
                "prompt": to_messages(r["prompt"], system_prompt, few_shot),
                "completion": [{"role": "assistant", "content": f"<answer>{item}</answer>"}],
            })
    if not out:
        raise DivtuneError("the training dataset is empty")
    return Dataset.from_list(out)


# --------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------


def mlflow_callback():
    from transformers import TrainerCallback

    class MlflowLogCallback(TrainerCallback):
        """Send every trainer log (loss, rewards, diversity/*) to the active MLflow run."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            import mlflow

            if not logs or mlflow.active_run() is None or not state.is_world_process_zero:
                return
            metrics = {}
            for k, v in logs.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    metrics[k.replace("/", "_") if k.startswith("rewards/") else k] = float(v)
            if metrics:
                mlflow.log_metrics(metrics, step=state.global_step)

    return MlflowLogCallback()


def progress_off() -> bool:
    return os.environ.get("DIVTUNE_NO_PROGRESS") == "1"


def is_main_rank() -> bool:
    """Global rank 0 (torchrun's ``RANK``), or a single process."""
    return int(os.environ.get("RANK", "0") or 0) == 0


@contextlib.contextmanager
def mlflow_run_from_env():
    """``MLFLOW_RUN_ID`` (a TrainJob's pods get the pipeline's ``train`` child run there) made the active MLflow run
    on global rank 0 for the block, so :func:`mlflow_callback` logs every step into it, once; the other ranks and
    a process without the variable (or with a run already active) log nothing of their own."""
    rid = os.environ.get("MLFLOW_RUN_ID")
    if not rid or not is_main_rank():
        yield None
        return
    import mlflow

    from divtune.registry import tracking

    if mlflow.active_run() is not None:
        yield mlflow.active_run().info.run_id
        return
    tracking.setup()
    with mlflow.start_run(run_id=rid):
        yield rid


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------


def lora_config(tc: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=tc.lora.r,
        lora_alpha=tc.lora.alpha,
        lora_dropout=tc.lora.dropout,
        target_modules=tc.lora.target_modules,
        layers_to_transform=tc.lora.layers_to_transform,
        task_type="CAUSAL_LM",
    )


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def grpo_config(tc: TrainConfig, output_dir: Path):
    import torch
    from trl import GRPOConfig

    from divtune.models.sampling import SamplingParams

    from divtune.rewards.trl_adapter import check_batch_geometry

    spg = tc.steps_per_generation or tc.gradient_accumulation_steps
    check_batch_geometry(tc.per_device_train_batch_size, spg, tc.num_generations, world_size(), gather=True)
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_generations=tc.num_generations,
        per_device_train_batch_size=tc.per_device_train_batch_size,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        steps_per_generation=tc.steps_per_generation,
        max_steps=tc.max_steps,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler_type,
        beta=tc.beta,
        max_completion_length=tc.max_completion_length,
        loss_type=tc.loss_type,
        scale_rewards=tc.scale_rewards,
        logging_steps=tc.logging_steps,
        save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit,
        seed=tc.seed,
        bf16=tc.bf16 and torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # else accelerate sees torchrun's CPU processes as one each (no gloo)
        use_vllm=tc.use_vllm,
        gradient_checkpointing=tc.gradient_checkpointing,
        report_to="none",
        disable_tqdm=progress_off(),
        # the sampling contract (divtune.models.sampling): every field explicit, none from generation_config.json
        **SamplingParams(n=tc.num_generations, temperature=tc.temperature, top_p=tc.top_p, top_k=tc.top_k,
                         min_p=tc.min_p, repetition_penalty=tc.repetition_penalty,
                         max_new_tokens=tc.max_completion_length, seed=tc.seed).trl_kwargs(use_vllm=tc.use_vllm),
    )
    if tc.use_vllm:
        from divtune.train.sharding import grpo_kwargs

        kwargs.update(vllm_mode=tc.vllm_mode, vllm_gpu_memory_utilization=tc.vllm_gpu_memory_utilization)
        kwargs.update(grpo_kwargs(tc))  # tensor parallelism and context window of the colocated engine
    return GRPOConfig(**kwargs)


def sft_config(tc: TrainConfig, output_dir: Path, num_rows: int):
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=tc.per_device_train_batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=tc.sft_epochs,
        max_steps=-1,
        learning_rate=tc.learning_rate,
        logging_steps=tc.logging_steps,
        save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit,
        seed=tc.seed,
        bf16=tc.bf16 and torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        completion_only_loss=True,
        report_to="none",
        disable_tqdm=progress_off(),
    )


# --------------------------------------------------------------------------------------
# Rollout sampling independent of the process layout
# --------------------------------------------------------------------------------------

ROW_SEEDED_ENV = "DIVTUNE_ROW_SEEDED_SAMPLING"
_M32 = 0xFFFFFFFF


def row_seeded_sampling(tc: TrainConfig | None = None) -> bool:
    """Whether rollouts are sampled per row (``DIVTUNE_ROW_SEEDED_SAMPLING=1``): see :class:`RowSeededSampler`."""
    return os.environ.get(ROW_SEEDED_ENV) == "1" or bool(tc is not None and tc.row_seeded_sampling)


def _mul32(x, m: int):
    """``(x * m) mod 2**32`` for an int64 tensor ``0 <= x < 2**32`` without int64 overflow."""
    return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x):
    """A 32-bit integer hash (lowbias32) of an int64 tensor of values below 2**32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_key(seed: int, step: int, mode: str, row: int) -> int:
    """The 32-bit sampling key of the ``row``-th completion (in the global, rank-ordered batch) at ``step``."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{step}/{mode}/{row}".encode(), digest_size=4).digest(), "big")


class RowSeededSampler:
    """A transformers logits processor that draws each row's next token from its own random stream.

    ``generate`` samples a whole batch with one ``torch.multinomial``, so a completion depends on which other rows
    share its process and batch: the same seed on 1 or 8 processes gives other rollouts.  Here the sampling
    warpers (temperature, top-k, top-p, min-p: transformers' own) are applied and the token is chosen by the
    Gumbel-max trick, ``argmax(scores + Gumbel noise)`` -- an exact sample of ``softmax(scores)`` -- with noise
    hashed from (row key, token position, vocabulary index); the scores come back one-hot (0 for the choice,
    -inf elsewhere), so the warpers and ``multinomial`` that ``generate`` applies after custom processors keep
    that token.  A row's completion then depends only on its key and its own logits.
    """

    def __init__(self, keys: Sequence[int], generation_config: Any) -> None:
        from transformers.generation.logits_process import (LogitsProcessorList, MinPLogitsWarper,
                                                            TemperatureLogitsWarper, TopKLogitsWarper,
                                                            TopPLogitsWarper)

        gc = generation_config
        for name, off in (("typical_p", 1.0), ("epsilon_cutoff", 0.0), ("eta_cutoff", 0.0), ("top_h", None)):
            if getattr(gc, name, off) not in (off, None):
                raise DivtuneError(f"row-seeded sampling does not implement {name}={getattr(gc, name)!r}")
        w = LogitsProcessorList()  # the order of transformers' GenerationMixin._get_logits_processor
        if gc.temperature is not None and gc.temperature != 1.0:
            w.append(TemperatureLogitsWarper(gc.temperature))
        if gc.top_k is not None and gc.top_k != 0:
            w.append(TopKLogitsWarper(top_k=gc.top_k))
        if gc.top_p is not None and gc.top_p < 1.0:
            w.append(TopPLogitsWarper(top_p=gc.top_p))
        if gc.min_p is not None:
            w.append(MinPLogitsWarper(min_p=gc.min_p))
        self.warpers = w
        self.keys = list(keys)
        self.position = 0  # tokens generated so far (the same for every row of the batch)

    def __call__(self, input_ids, scores):
        import torch

        scores = self.warpers(input_ids, scores)
        dev = scores.device
        keys = torch.tensor(self.keys, dtype=torch.int64, device=dev)
        if keys.numel() != scores.size(0):
            raise DivtuneError(f"row-seeded sampling got {scores.size(0)} rows for {keys.numel()} keys")
        row = _mix32(keys ^ _mix32((self.position + 0x9E3779B9) & _M32))  # (plain ints hash the same way)
        vocab = _mul32(torch.arange(scores.size(1), dtype=torch.int64, device=dev), 0x9E3779B1)
        h = _mix32(row[:, None] ^ vocab[None, :])
        u = ((h >> 8).to(torch.float32) + 0.5) / float(1 << 24)  # (0, 1), 24 bits
        choice = torch.argmax(scores.float() - torch.log(-torch.log(u)), dim=-1)
        self.position += 1
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, choice[:, None], 0.0)


def row_seeded_trainer_class():
    """``GRPOTrainer`` whose transformers rollouts use :class:`RowSeededSampler`, keyed by (seed, global step,
    global row): the same rollouts on any number of processes, and again after a resume from a checkpoint."""
    from trl import GRPOTrainer

    class RowSeededGRPOTrainer(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            if self.use_vllm or getattr(self, "use_transformers_continuous_batching", False):
                raise DivtuneError(f"{ROW_SEEDED_ENV}=1 applies to transformers generation, not vLLM or "
                                   "continuous batching")
            mode = "train" if self.model.training else "eval"
            first = self.accelerator.process_index * len(prompt_ids)
            sampler = RowSeededSampler([row_key(self.args.seed, self.state.global_step, mode, first + i)
                                        for i in range(len(prompt_ids))], self.generation_config)
            model = self.accelerator.unwrap_model(self.model_wrapped)
            plain = model.generate

            def generate(*a, **kw):
                kw["logits_processor"] = [*(kw.get("logits_processor") or []), sampler]
                return plain(*a, **kw)

            model.generate = generate
            try:
                out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            finally:
                del model.generate  # the class's method again
            if sampler.position == 0:
                raise DivtuneError("row-seeded sampling was not applied (generation bypassed the unwrapped model)")
            return out

    return RowSeededGRPOTrainer


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def checkpoint_complete(path: Path) -> bool:
    """Whether a ``checkpoint-N`` directory was written to the end: the Trainer writes
    ``trainer_state.json`` last, after the (safetensors) weights, so a run killed while saving
    leaves a directory without a readable one."""
    import json

    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "global_step" in state and any(path.glob("*.safetensors"))


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest *complete* checkpoint under ``output_dir`` (a half-written one from a kill is skipped)."""
    import re

    if not output_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, p in sorted(found, reverse=True):
        if checkpoint_complete(p):
            return str(p)
    return None


def train(base_model_dir: str | os.PathLike, rows: Sequence[dict[str, Any]], tc: TrainConfig,
          adapter_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, *,
          trust_remote_code: bool = False, dtype: str = "auto", extra_callbacks: Sequence[Any] = (),
          system_prompt: str | None = None, few_shot: int = 0) -> TrainResult:
    """Train a LoRA adapter on ``base_model_dir`` with ``tc.method``; resume from ``checkpoint_dir``.

    ``rows`` are list-selection records (``prompt``, ``group_id``, ``items``; DARLING tasks add
    their own metadata columns).  The adapter (and tokenizer) is written to ``adapter_dir``.
    """
    from divtune.models.loading import load_model_and_tokenizer, rank_device

    if row_seeded_sampling(tc) and tc.method != "sft" and tc.use_vllm:
        raise ConfigError(f"{ROW_SEEDED_ENV}=1 samples with transformers' generate: set train.use_vllm=false "
                          f"or unset {ROW_SEEDED_ENV}")
    ckpt = Path(checkpoint_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    device = rank_device()  # cuda:LOCAL_RANK (and the current CUDA device) under torchrun, else cpu
    # bad reward settings fail before the model loads
    reward = None if tc.method == "sft" else group_reward_for(tc, device)
    from divtune.train.sharding import policy_load_device

    # under FSDP the policy loads on the host and accelerate moves each rank's shard to its GPU when it wraps it
    # (a whole copy per GPU would leave no room for the colocated vLLM engine, which starts first)
    model, tokenizer = load_model_and_tokenizer(base_model_dir, dtype=dtype, device=policy_load_device() or device,
                                                trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    callbacks = [mlflow_callback(), *extra_callbacks]
    resume = last_checkpoint(ckpt)

    if tc.method == "sft":
        from trl import SFTTrainer

        ds = sft_dataset(rows, system_prompt, few_shot)
        trainer = SFTTrainer(model=model, args=sft_config(tc, ckpt, len(ds)), train_dataset=ds,
                             processing_class=tokenizer, peft_config=lora_config(tc), callbacks=callbacks)
    else:
        from trl import GRPOTrainer

        from divtune.rewards.trl_adapter import TRLGroupReward

        if row_seeded_sampling(tc):
            GRPOTrainer = row_seeded_trainer_class()  # noqa: N806

        meta_keys = getattr(reward, "meta_keys", ("items",))
        fn = TRLGroupReward(reward, tc.num_generations, meta_keys=meta_keys)
        trainer = GRPOTrainer(model=model, reward_funcs=[fn], args=grpo_config(tc, ckpt), train_dataset=rl_dataset(rows, system_prompt, few_shot),
                              processing_class=tokenizer, peft_config=lora_config(tc), callbacks=callbacks)
    out = trainer.train(resume_from_checkpoint=resume)
    adapter = Path(adapter_dir)
    main_process = trainer.accelerator.is_main_process  # several ranks (torchrun) share the output volume
    if main_process and adapter.exists():
        shutil.rmtree(adapter)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(adapter))  # writes on the main process only
    if main_process:
        tokenizer.save_pretrained(str(adapter))
    metrics = {k: float(v) for k, v in (out.metrics or {}).items() if isinstance(v, (int, float))}
    return TrainResult(adapter_dir=adapter, global_step=int(trainer.state.global_step), resumed_from=resume, metrics=metrics)


def train_from_config(cfg: Any, data: str | os.PathLike, output: str | os.PathLike, *,
                      base: str | os.PathLike | None = None, checkpoints: str | os.PathLike | None = None,
                      force: bool = False) -> tuple[TrainResult, Path]:
    """``divtune train``: the config's method on a dataset file, from ``base`` or the config's model.

    DARLING's required paths are checked first (before the data, the base model, a download); the
    checkpoints default to ``<output>-checkpoints`` and are resumed when present.  An existing ``output`` that
    divtune did not write is refused before anything runs (``force`` replaces it); the adapter is built in a
    temporary sibling and moved into place at the end.  Returns the result and base.
    """
    from divtune import outputs

    from divtune.data.dataset import training_rows
    from divtune.models.checks import check_model_dir
    from divtune.models.resolve import resolve_base_model

    if cfg.train.method == "darling":
        from divtune.rewards.darling import check_darling_config

        check_darling_config(cfg.train.darling)
    out = outputs.check_output_dir(output, force=force)
    rows = training_rows(cfg.data.task, data)
    base_dir = check_model_dir(base) if base else resolve_base_model(cfg.model)
    ckpt = Path(checkpoints) if checkpoints else out.with_name(out.name + "-checkpoints")
    kw = dict(trust_remote_code=cfg.model.trust_remote_code, dtype=cfg.model.dtype,
              system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: the ranks share one output path (rank 0 writes it)
        return train(base_dir, rows, cfg.train, out, ckpt, **kw), base_dir
    with outputs.output_dir(out, command="train", force=force) as tmp:
        res = train(base_dir, rows, cfg.train, tmp, ckpt, **kw)
    res.adapter_dir = out
    return res, base_dir
