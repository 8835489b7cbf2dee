"""How a TrainJob's processes shard training: ``train.sharding`` mapped onto accelerate's launcher contract.

``train.sharding: fsdp`` trains with PyTorch FSDP2 through accelerate, configured the way ``accelerate launch``
configures a script: by environment variables that ``Accelerator()`` (created by the HF Trainer inside TRL's
GRPOTrainer) reads into its ``FullyShardedDataParallelPlugin`` (``accelerate/utils/launch.py``
``prepare_multi_gpu_env``, ``accelerate/utils/dataclasses.py`` ``FullyShardedDataParallelPlugin.__post_init__``).
The TrainJob keeps ``torchrun`` as its command (Kubeflow Trainer's torch runtime passes nodes, ranks and the
rendezvous through ``PET_*``), so these variables are the whole difference between a sharded and an unsharded job;
the settings follow TRL 1.16's own ``trl/accelerate_configs/fsdp2.yaml``: FSDP2, full shard, auto-wrap by
transformer layer, CPU offload off, a full state dict on save (an ordinary adapter directory), FSDP's own
activation checkpointing off (``train.gradient_checkpointing`` keeps the HF one, as TRL's recipes do; the HF
Trainer refuses both at once).  PEFT + FSDP2 + colocated vLLM is TRL's supported path: the weight sync merges the
adapter into the sharded base and streams one full tensor at a time (``trl/generation/vllm_generation.py``
``_iter_fsdp2_params``).

:func:`grpo_kwargs` are the trainer-side arguments of the same config (vLLM tensor parallelism, context window)
for ``divtune.train.trainer.grpo_config``; :func:`policy_load_device` says where the policy is loaded before
FSDP shards it (the host: a whole copy on a GPU would leave no room for vLLM, which starts before the wrap).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from divtune.config import TrainConfig

__all__ = ["grpo_kwargs", "launcher_env", "policy_load_device"]


def launcher_env(tc: TrainConfig) -> dict[str, str]:
    """The environment ``accelerate launch`` would set for ``tc.sharding`` (empty for ``none``)."""
    if tc.sharding == "none":
        return {}
    env = {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        "FSDP_RESHARD_AFTER_FORWARD": str(tc.fsdp_reshard_after_forward).lower(),
        "FSDP_OFFLOAD_PARAMS": str(tc.fsdp_cpu_offload).lower(),
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
        "FSDP_CPU_RAM_EFFICIENT_LOADING": "true",
        "FSDP_SYNC_MODULE_STATES": "true",
        "FSDP_ACTIVATION_CHECKPOINTING": "false",
    }
    if tc.fsdp_wrap_layer:
        env["FSDP_TRANSFORMER_CLS_TO_WRAP"] = tc.fsdp_wrap_layer
    return env


def grpo_kwargs(tc: TrainConfig) -> dict[str, Any]:
    """GRPOConfig arguments of the sharding/generation settings (vLLM colocate only)."""
    if not (tc.use_vllm and tc.vllm_mode == "colocate"):
        return {}
    return {"vllm_tensor_parallel_size": tc.vllm_tensor_parallel_size,
            "vllm_max_model_length": tc.vllm_max_model_length}


def policy_load_device(env: Mapping[str, str] | None = None) -> str | None:
    """``"cpu"`` under FSDP (accelerate moves each rank's shard to its GPU when it wraps the model); None: the
    caller's default device."""
    env = os.environ if env is None else env
    return "cpu" if env.get("ACCELERATE_USE_FSDP", "").lower() == "true" else None
