"""Run a :class:`~divtune.rewards.base.GroupReward` inside TRL's GRPOTrainer, rank-correctly.

TRL calls a reward function with *this process's* slice of the generation batch: prompts,
completions and every dataset column, one entry per completion.  A group's G completions are
consecutive in the global (rank-ordered) batch, but when ``per_device_train_batch_size x
steps_per_generation`` is not a multiple of G a group straddles two ranks.  The adapter
therefore gathers every rank's rows (a small list of strings), splits the global batch into its
complete groups and scores each group on exactly one rank (group k on rank k mod world size: a
reward model or partitioner runs on every rank's GPU, each on its share), then shares the scores
(a second ``all_gather_object``) and returns this rank's slice -- the same values, in the same
order, as one process scoring the whole batch.  With gathering disabled it refuses a slice that
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
Share = Callable[[Any], tuple[list[Any], int]]


def local_gather(rows: list[Row]) -> tuple[list[list[Row]], int]:
    """Single process: nothing to gather."""
    return [rows], 0


def torch_distributed_gather(rows: list[Row]) -> tuple[list[list[Row]], int]:
    """All ranks' rows in rank order (``all_gather_object``) and this rank's index.

    Falls back to :func:`local_gather` when ``torch.distributed`` is not initialised.
    """
    return torch_distributed_share(rows)


def torch_distributed_share(value: Any) -> tuple[list[Any], int]:
    """Every rank's ``value`` in rank order (``all_gather_object``) and this rank's index; alone: ``[value], 0``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value], 0
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
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


def split_groups(rows: Sequence[Row], num_generations: int) -> list[Sequence[Row]]:
    """The consecutive whole groups of ``rows``; every run of equal group id must hold a multiple of G rows."""
    groups: list[Sequence[Row]] = []
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
        groups += [rows[start : start + num_generations] for start in range(i, j, num_generations)]
        i = j
    return groups


def score_group(group: Sequence[Row], reward: GroupReward) -> tuple[list[float], dict[str, float]]:
    """One group's rewards (checked: one finite value per completion) and its diagnostics (may be empty)."""
    texts = [r[1] for r in group]
    meta = group[0][2]
    values = reward(texts, meta)
    if len(values) != len(texts):
        raise GroupRewardError(f"reward {reward.name} returned {len(values)} values for {len(texts)} completions")
    if not all(math.isfinite(v) for v in values):
        raise GroupRewardError(f"reward {reward.name} returned a non-finite value for group {group[0][0]!r}")
    diag = reward.diagnostics(texts, meta) if hasattr(reward, "diagnostics") else {}
    return [float(v) for v in values], dict(diag or {})


def score_rows(rows: Sequence[Row], reward: GroupReward, num_generations: int) -> tuple[list[float], list[dict[str, float]]]:
    """Score consecutive whole groups; every run of equal group id must hold a multiple of G rows."""
    rewards: list[float] = []
    diags: list[dict[str, float]] = []
    for group in split_groups(rows, num_generations):
        values, diag = score_group(group, reward)
        rewards.extend(values)
        if diag:
            diags.append(diag)
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
        share: Share | None = None,
    ) -> None:
        """``gather``: all ranks' rows (None: this process's rows are whole groups).  ``share``: an all-gather of
        any picklable value across the same ranks, used to split the scoring (each group scored on one rank, the
        scores shared); None with the default ``gather`` is ``torch.distributed``'s, None with another ``gather``
        scores every group on every rank (correct, redundant)."""
        if num_generations < 2:
            raise ConfigError(f"a group reward needs num_generations >= 2, got {num_generations}")
        self.reward = reward
        self.num_generations = num_generations
        self.group_key = group_key
        self.meta_keys = tuple(meta_keys)
        self.gather = gather
        self.share = share if share is not None else (
            torch_distributed_share if gather is torch_distributed_gather else None)
        self.groups_scored = 0  # by this process (each group of the global batch on exactly one rank)
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
        groups = split_groups(flat, self.num_generations)  # every rank checks the same global batch
        world = len(per_rank)
        if self.share is None or world == 1:
            scored = {k: score_group(g, self.reward) for k, g in enumerate(groups)}
            self.groups_scored += len(scored)
        else:
            scored = self._score_shared(groups, rank, world)
        rewards = [v for k in range(len(groups)) for v in scored[k][0]]
        diags = [scored[k][1] for k in range(len(groups)) if scored[k][1]]
        if log_metric is not None and diags:
            for key in diags[0]:
                log_metric(f"diversity/{key}", sum(d[key] for d in diags) / len(diags))
        return rewards[offset : offset + len(rows)]

    def _score_shared(self, groups: list[Sequence[Row]], rank: int, world: int) -> dict[int, tuple]:
        """Group k on rank k mod ``world``, then every rank's scores to every rank.  A rank whose scoring fails
        still takes part in the exchange (the others would wait in it forever) and every rank raises its error."""
        scored: dict[int, tuple] = {}
        error: BaseException | None = None
        try:
            for k in range(rank, len(groups), world):
                scored[k] = score_group(groups[k], self.reward)
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
        self.groups_scored += len(scored)
        shared, _ = self.share({"scored": scored, "error": None if error is None else (rank, type(error), str(error))})
        if error is not None:
            raise error
        failed = [p["error"] for p in shared if p["error"] is not None]
        if failed:
            r, kind, msg = failed[0]
            try:  # the same error type as on that rank (a DivtuneError stays one line for the CLI)
                exc = kind(msg) if isinstance(kind, type) and issubclass(kind, Exception) else None
            except Exception:  # noqa: BLE001 - a type without a one-argument constructor
                exc = None
            raise exc if exc is not None else GroupRewardError(f"rank {r} failed scoring its groups: {msg}")
        out = {k: v for p in shared for k, v in p["scored"].items()}
        if sorted(out) != list(range(len(groups))):
            raise GroupRewardError(f"the ranks scored groups {sorted(out)} of {len(groups)}: they disagree about the batch")
        return out
