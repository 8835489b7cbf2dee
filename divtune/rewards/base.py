"""The group-reward interface.

A group reward maps one prompt's G completions (plus that prompt's metadata) to G floats.
GAPO's frequency-aware reward, DARLING's quality x diversity and the per-sample baselines
are all group rewards, so one harness (:mod:`divtune.rewards.trl_adapter`) trains with any.
Implementations are pure: no model state, no I/O, deterministic given their inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class GroupReward(Protocol):
    """``reward(completions, meta) -> list[float]`` with ``len(result) == len(completions)``."""

    name: str

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]: ...

    def diagnostics(self, completions: Sequence[str], meta: Mapping[str, Any]) -> dict[str, float]:
        """Per-group metrics to log while training (may be empty)."""
        ...


class GroupRewardError(ValueError):
    """A group handed to a reward is malformed (wrong size, mixed prompts, bad metadata)."""
