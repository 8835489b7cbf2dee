"""Post-training with TRL: GAPO / DARLING / GRPO through ``GRPOTrainer``, the SFT baseline through
``SFTTrainer``; LoRA through peft; live metrics to the active MLflow run; resumable checkpoints.
"""

from __future__ import annotations

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


def group_reward_for(tc: TrainConfig):
    """The group reward a method trains with."""
    from divtune.rewards.lists import FrequencyAwareReward, ValidityReward

    if tc.method == "gapo":
        return FrequencyAwareReward()
    if tc.method == "grpo":
        return ValidityReward()
    if tc.method == "darling":
        from divtune.rewards.darling import build_darling_reward

        return build_darling_reward(tc.darling)
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
        beta=tc.beta,
        temperature=tc.temperature,
        max_completion_length=tc.max_completion_length,
        loss_type=tc.loss_type,
        scale_rewards=tc.scale_rewards,
        logging_steps=tc.logging_steps,
        save_steps=tc.save_steps,
        save_total_limit=tc.save_total_limit,
        seed=tc.seed,
        bf16=tc.bf16 and torch.cuda.is_available(),
        use_vllm=tc.use_vllm,
        gradient_checkpointing=tc.gradient_checkpointing,
        report_to="none",
        disable_tqdm=progress_off(),
        top_k=0,
        top_p=1.0,
    )
    if tc.use_vllm:
        kwargs.update(vllm_mode=tc.vllm_mode, vllm_gpu_memory_utilization=tc.vllm_gpu_memory_utilization)
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
        completion_only_loss=True,
        report_to="none",
        disable_tqdm=progress_off(),
    )


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
    from divtune.models.loading import load_model_and_tokenizer

    ckpt = Path(checkpoint_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    reward = None if tc.method == "sft" else group_reward_for(tc)  # bad reward settings fail before the model loads
    model, tokenizer = load_model_and_tokenizer(base_model_dir, dtype=dtype, trust_remote_code=trust_remote_code)
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
