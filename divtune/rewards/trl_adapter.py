"""Run a :class:`~divtune.rewards.base.GroupReward` inside TRL's GRPOTrainer, rank-correctly.

TRL calls a reward function with *this process's* slice of the generation batch: prompts,
completions and every dataset column, one entry per completion.  A group's G completions are
consecutive in the global (rank-ordered) batch, but when ``per_device_train_batch_size x
steps_per_generation`` is not a multiple of G a group straddles two ranks.  The adapter
therefore gathers every rank's rows (a small list of strings) before scoring, scores complete
groups only, and returns this rank's slice.  With gathering disabled it refuses a slice that
does not consist of whole groups, and :func:`check_batch_geometry` refuses such a geometry up
front.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from divtune.errors import ConfigError
from divtune.rewards.base import GroupReward, GroupRewardError
from divtune.answers.extract import completion_text

Row = tuple[Any, str, dict[str, Any]]  # (group id, completion text, metadata)
Gather = Callable[[list[Row]], tuple[list[list[Row]], int]]


def local_gather(rows: list[Row]) -> tuple[list[list[Row]], int]:
    """Single process: nothing to gather."""
    return [rows], 0


def torch_distributed_gather(rows: list[Row]) -> tuple[list[list[Row]], int]:
    """All ranks' rows in rank order (``all_gather_object``) and this rank's index.

    Falls back to :func:`local_gather` when ``torch.distributed`` is not initialised.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local_gather(rows)
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, rows)
    return out, dist.get_rank()


def check_batch_geometry(
    per_device_batch: int, steps_per_generation: int, num_generations: int, world_size: int, *, gather: bool
) -> None:
    """Refuse batch shapes TRL cannot group, or that split groups when gathering is off."""
    per_rank = per_device_batch * steps_per_generation
    if (per_rank * world_size) % num_generations:
        raise ConfigError(
            f"generation batch {per_rank} x {world_size} processes is not a multiple of "
            f"num_generations={num_generations}"
        )
    if not gather and world_size > 1 and per_rank % num_generations:
        raise ConfigError(
            f"per-process generation batch (per_device_train_batch_size x steps_per_generation = {per_rank}) "
            f"is not a multiple of num_generations={num_generations}: a group would straddle ranks; "
            "enable group gathering or change the batch geometry"
        )


def score_rows(rows: Sequence[Row], reward: GroupReward, num_generations: int) -> tuple[list[float], list[dict[str, float]]]:
    """Score consecutive whole groups; every run of equal group id must hold a multiple of G rows."""
    rewards: list[float] = []
    diags: list[dict[str, float]] = []
    i = 0
    while i < len(rows):
        gid = rows[i][0]
        j = i
        while j < len(rows) and rows[j][0] == gid:
            j += 1
        run = j - i
        if run % num_generations:
            raise GroupRewardError(
                f"group {gid!r} has {run} completions in this batch, expected a multiple of "
                f"G={num_generations} (a group was split or mixed with another prompt)"
            )
        for start in range(i, j, num_generations):
            group = rows[start : start + num_generations]
            texts = [r[1] for r in group]
            meta = group[0][2]
            values = reward(texts, meta)
            if len(values) != len(texts):
                raise GroupRewardError(f"reward {reward.name} returned {len(values)} values for {len(texts)} completions")
            if not all(math.isfinite(v) for v in values):
                raise GroupRewardError(f"reward {reward.name} returned a non-finite value for group {gid!r}")
            rewards.extend(float(v) for v in values)
            diag = reward.diagnostics(texts, meta) if hasattr(reward, "diagnostics") else {}
            if diag:
                diags.append(diag)
        i = j
    return rewards, diags


class TRLGroupReward:
    """A TRL reward function (``__call__(prompts, completions, **columns)``) for a group reward."""

    def __init__(
        self,
        reward: GroupReward,
        num_generations: int,
        *,
        group_key: str = "group_id",
        meta_keys: Sequence[str] = ("items",),
        gather: Gather | None = torch_distributed_gather,
    ) -> None:
        if num_generations < 2:
            raise ConfigError(f"a group reward needs num_generations >= 2, got {num_generations}")
        self.reward = reward
        self.num_generations = num_generations
        self.group_key = group_key
        self.meta_keys = tuple(meta_keys)
        self.gather = gather
        self.__name__ = reward.name  # TRL logs rewards/<name>/mean

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        log_metric = columns.pop("log_metric", None)
        if self.group_key not in columns:
            raise GroupRewardError(f"the training dataset needs a {self.group_key!r} column for group rewards")
        missing = [k for k in self.meta_keys if k not in columns]
        if missing:
            raise GroupRewardError(f"the training dataset lacks column(s) {', '.join(missing)} needed by {self.reward.name}")
        gids = columns[self.group_key]
        rows: list[Row] = [
            (gids[i], completion_text(c), {k: columns[k][i] for k in self.meta_keys})
            for i, c in enumerate(completions)
        ]
        if self.gather is None:
            per_rank, rank = [rows], 0
        else:
            per_rank, rank = self.gather(rows)
        flat = [r for part in per_rank for r in part]
        offset = sum(len(part) for part in per_rank[:rank])
        rewards, diags = score_rows(flat, self.reward, self.num_generations)
        if log_metric is not None and diags:
            for key in diags[0]:
                log_metric(f"diversity/{key}", sum(d[key] for d in diags) / len(diags))
        return rewards[offset : offset + len(rows)]
