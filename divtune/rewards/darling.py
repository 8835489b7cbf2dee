"""DARLING's group reward: quality x normalised partition diversity.

``div_i = (n - |class(i)|) / (n - 1)`` -- the share of the *other* responses not equivalent to i --
floored at ``diversity_floor`` (0.1 in the reference).  With ``partition_correct_only`` incorrect
responses are singletons and only correct ones are partitioned.  Multiplicative (default):
``r_i = q_i x div_i``; additive (ablation): per-group min-max normalised quality + diversity.
Train it with ``scale_rewards="none"`` and a token-level loss (``loss_type="dapo"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from divtune.errors import ConfigError, DivtuneError
from divtune.rewards.extract import match_item
from divtune.rewards.partition import Partitioner, make_partitioner


def diversity_scores(classes: Sequence[int], floor: float = 0.1) -> list[float]:
    n = len(classes)
    if n < 2:
        raise DivtuneError(f"diversity needs a group of at least 2, got {n}")
    size = Counter(classes)
    return [max((n - size[c]) / (n - 1), floor) for c in classes]


def combine(quality: Sequence[float], diversity: Sequence[float], mode: str = "multiplicative") -> list[float]:
    if len(quality) != len(diversity):
        raise DivtuneError("quality and diversity must have one value per response")
    if mode == "multiplicative":
        return [q * d for q, d in zip(quality, diversity)]
    if mode == "additive":
        def norm(xs: Sequence[float]) -> list[float]:
            lo, hi = min(xs), max(xs)
            return [0.0 if hi == lo else (x - lo) / (hi - lo) for x in xs]
        return [q + d for q, d in zip(norm(quality), norm(diversity))]
    raise ConfigError(f"unknown combination {mode!r} (multiplicative, additive)")


def list_validity_quality(completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
    items = meta.get("items")
    if not isinstance(items, (list, tuple)) or len(items) < 2:
        raise DivtuneError("list-validity quality needs meta['items'] with at least two items")
    return [1.0 if match_item(c, items) is not None else 0.0 for c in completions]


class DarlingReward:
    def __init__(self, partitioner: Partitioner, quality=list_validity_quality, *, diversity_floor: float = 0.1,
                 combination: str = "multiplicative", partition_correct_only: bool = False,
                 meta_keys: Sequence[str] = ("items",)) -> None:
        if not 0.0 <= diversity_floor <= 1.0:
            raise ConfigError(f"diversity_floor must be in [0, 1], got {diversity_floor}")
        combine([1.0], [1.0], combination)  # validates the mode
        self.name = f"darling_{partitioner.name}"
        self.partitioner = partitioner
        self.quality = quality
        self.floor = diversity_floor
        self.combination = combination
        self.correct_only = partition_correct_only
        self.meta_keys = tuple(meta_keys)

    def _classes(self, completions: Sequence[str], quality: Sequence[float]) -> list[int]:
        if not any(c.strip() for c in completions):
            raise DivtuneError("every completion in the group is empty: check generation settings "
                               "(max_completion_length, EOS) -- refusing to score them")
        if not self.correct_only:
            return self.partitioner.partition(list(completions))
        idx = [i for i, q in enumerate(quality) if q > 0]
        classes = list(range(len(completions), 2 * len(completions)))  # incorrect: singletons
        if len(idx) >= 2:
            for i, c in zip(idx, self.partitioner.partition([completions[i] for i in idx])):
                classes[i] = c
        return classes

    def scores(self, completions: Sequence[str], meta: Mapping[str, Any]) -> tuple[list[float], list[float], list[int]]:
        if len(completions) < 2:
            raise DivtuneError(f"a DARLING group needs at least 2 responses, got {len(completions)}")
        q = [float(x) for x in self.quality(completions, meta)]
        classes = self._classes(completions, q)
        return q, diversity_scores(classes, self.floor), classes

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        q, d, _ = self.scores(completions, meta)
        return combine(q, d, self.combination)

    def diagnostics(self, completions: Sequence[str], meta: Mapping[str, Any]) -> dict[str, float]:
        q, d, classes = self.scores(completions, meta)
        return {"quality": sum(q) / len(q), "diversity": sum(d) / len(d), "classes": float(len(set(classes)))}


def build_darling_reward(dc) -> DarlingReward:
    """From :class:`divtune.config.DarlingConfig`."""
    if dc.quality != "list_validity":
        raise ConfigError(f"darling quality {dc.quality!r} is not available yet (list_validity)")
    part = make_partitioner(dc.partitioner, dc.partitioner_path, dc.threshold)
    return DarlingReward(part, list_validity_quality, diversity_floor=dc.diversity_floor,
                         combination=dc.combination, partition_correct_only=dc.partition_correct_only)
