"""Rewards for list selection: GAPO's frequency-aware group reward and the per-sample baseline.

Both read the listed items from the group's metadata (``meta["items"]``) and the chosen item
from each completion with :func:`divtune.answers.extract.match_item`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from divtune.answers.metrics import answer_distribution, entropy_bits, jsd_to_uniform, unique_ratio
from divtune.rewards.base import GroupRewardError
from divtune.answers.extract import match_item

INVALID_REWARD = -1.0


def frequency_aware_rewards(answers: Sequence[str | None], num_items: int) -> list[float]:
    """GAPO section 5.2: ``r_i = 1 - (f(o_i) - 1/L)`` for a valid answer, ``-1`` otherwise.

    ``f(v)`` is the share of item ``v`` among the group's *valid* answers; ``L`` the number of
    listed items; ``None`` marks an invalid answer.
    """
    if num_items < 1:
        raise GroupRewardError(f"the list must have at least one item, got {num_items}")
    valid = [a for a in answers if a is not None]
    counts = Counter(valid)
    n_valid = len(valid)
    target = 1.0 / num_items
    return [
        INVALID_REWARD if a is None else 1.0 - (counts[a] / n_valid - target) for a in answers
    ]


def _items(meta: Mapping[str, Any]) -> list[str]:
    items = meta.get("items")
    if not isinstance(items, (list, tuple)) or len(items) < 2:
        raise GroupRewardError("list rewards need meta['items'] with at least two items")
    return list(items)


def list_diagnostics(answers: Sequence[str | None], items: Sequence[str]) -> dict[str, float]:
    """In-group diversity metrics logged while training."""
    return {
        "invalid_rate": sum(a is None for a in answers) / len(answers),
        "group_jsd": jsd_to_uniform(answer_distribution(answers, items)),
        "unique_ratio": unique_ratio(answers),
        "entropy": entropy_bits(answers),
    }


@dataclass(frozen=True)
class FrequencyAwareReward:
    """GAPO's group reward for sampling uniformly from a list."""

    name: str = "gapo_frequency"

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        items = _items(meta)
        return frequency_aware_rewards([match_item(c, items) for c in completions], len(items))

    def diagnostics(self, completions: Sequence[str], meta: Mapping[str, Any]) -> dict[str, float]:
        items = _items(meta)
        return list_diagnostics([match_item(c, items) for c in completions], items)


@dataclass(frozen=True)
class ValidityReward:
    """Per-sample GRPO baseline: +1 for a listed item, -1 otherwise (no group dependence)."""

    name: str = "validity"
    valid: float = 1.0
    invalid: float = INVALID_REWARD

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        items = _items(meta)
        return [self.valid if match_item(c, items) is not None else self.invalid for c in completions]

    def diagnostics(self, completions: Sequence[str], meta: Mapping[str, Any]) -> dict[str, float]:
        items = _items(meta)
        return list_diagnostics([match_item(c, items) for c in completions], items)
