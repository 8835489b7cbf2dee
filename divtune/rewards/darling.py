"""DARLING's group reward: quality x normalised partition diversity.

``div_i = (n - |class(i)|) / (n - 1)`` -- the share of the *other* responses not equivalent to i --
floored at ``diversity_floor`` (0.1 in the reference; its ``partition``, the function the released math
and instruct scripts use).  With ``partition_correct_only`` (the reference's ``partition_correct``
variant) only the c correct responses (quality > 0) are partitioned and scored among themselves:
a correct response gets ``(c - |class(i) & correct|) / (c - 1)``, an incorrect one the floor, and when
c <= 1 every response gets the floor.  Multiplicative (default): ``r_i = q_i x div_i``; additive
(ablation): per-group min-max normalised quality + diversity.  Train it with ``scale_rewards="none"``
and a token-level loss (``loss_type="dapo"``), as the released scripts do.

Quality rewards (list validity, verifiable math, a reward model, none) live in
:mod:`divtune.rewards.quality`.  With ``quality_shift="group_min"`` each group's quality is shifted by
minus its minimum (what the reference's ``add_bias`` evidently intends, applied once per response),
so unbounded reward-model scores multiply sensibly.  A negative quality under the multiplicative
combination is otherwise an error -- a duplicate's 0.1 x (-s) beats a unique response's 1.0 x (-s) --
unless ``allow_negative_quality`` asks for the released instruct run's raw product.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from divtune.errors import ConfigError, DivtuneError
from divtune.rewards.partition import Partitioner, make_partitioner
from divtune.rewards.quality import build_quality, check_reward_model_path, list_validity_quality

__all__ = ["DarlingReward", "build_darling_reward", "check_darling_config", "combine", "correct_only_diversity",
           "diversity_scores", "list_validity_quality"]


def diversity_scores(classes: Sequence[int], floor: float = 0.1) -> list[float]:
    n = len(classes)
    if n < 2:
        raise DivtuneError(f"diversity needs a group of at least 2, got {n}")
    size = Counter(classes)
    return [max((n - size[c]) / (n - 1), floor) for c in classes]


def correct_only_diversity(classes: Sequence[int], correct: Sequence[bool], floor: float = 0.1) -> list[float]:
    """The reference's ``partition_correct`` score (``partition_reward_vllm_serve.py:350-403``): with c correct
    responses, a correct one scores ``(c - |class(i) & correct|) / (c - 1)``, an incorrect one ``floor``;
    c <= 1 gives every response ``floor``.  Floored at ``floor`` like the n-based score."""
    n = len(classes)
    if n < 2:
        raise DivtuneError(f"diversity needs a group of at least 2, got {n}")
    if len(correct) != n:
        raise DivtuneError("correctness must have one value per response")
    c = sum(1 for ok in correct if ok)
    if c <= 1:
        return [floor] * n
    size = Counter(k for k, ok in zip(classes, correct) if ok)
    return [max((c - size[k]) / (c - 1), floor) if ok else floor for k, ok in zip(classes, correct)]


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


class DarlingReward:
    def __init__(self, partitioner: Partitioner, quality=list_validity_quality, *, diversity_floor: float = 0.1,
                 combination: str = "multiplicative", partition_correct_only: bool = False,
                 meta_keys: Sequence[str] | None = None, quality_shift: str = "none",
                 allow_negative_quality: bool = False) -> None:
        if not 0.0 <= diversity_floor <= 1.0:
            raise ConfigError(f"diversity_floor must be in [0, 1], got {diversity_floor}")
        if quality_shift not in ("none", "group_min"):
            raise ConfigError(f"unknown quality_shift {quality_shift!r} (none, group_min)")
        combine([1.0], [1.0], combination)  # validates the mode
        self.name = f"darling_{partitioner.name}"
        self.partitioner = partitioner
        self.quality = quality
        self.floor = diversity_floor
        self.combination = combination
        self.correct_only = partition_correct_only
        self.quality_shift = quality_shift
        self.allow_negative = allow_negative_quality
        self.meta_keys = tuple(meta_keys if meta_keys is not None else getattr(quality, "meta_keys", ("items",)))
        self._last: tuple[tuple[str, ...], Any, tuple] | None = None  # diagnostics reuse the reward's partition

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
        """(quality as combined -- shifted if configured --, diversity, class ids) for one group."""
        return self._compute(completions, meta)[:3]

    def _compute(self, completions: Sequence[str], meta: Mapping[str, Any]) -> tuple:
        if len(completions) < 2:
            raise DivtuneError(f"a DARLING group needs at least 2 responses, got {len(completions)}")
        key = tuple(completions)
        if self._last is not None and self._last[1] is meta and self._last[0] == key:
            return self._last[2]  # type: ignore[return-value]
        q = [float(x) for x in self.quality(completions, meta)]
        if len(q) != len(completions):
            raise DivtuneError(f"quality reward returned {len(q)} values for {len(completions)} completions")
        classes = self._classes(completions, q)
        raw = q
        if self.quality_shift == "group_min":
            lo = min(q)
            q = [x - lo for x in q]
        elif self.combination == "multiplicative" and min(q) < 0 and not self.allow_negative:
            raise DivtuneError(f"quality {min(q):.4g} < 0 under the multiplicative combination would reward "
                               "duplicates over diverse responses: set train.darling.quality_shift=group_min, "
                               "use a quality in [0, 1], or set train.darling.allow_negative_quality=true "
                               "(the released instruct run's raw product)")
        if self.correct_only:  # correctness is the raw quality (> 0), as the reference's rm_score > 0
            div = correct_only_diversity(classes, [x > 0 for x in raw], self.floor)
        else:
            div = diversity_scores(classes, self.floor)
        out = (q, div, classes, raw)
        self._last = (key, meta, out)
        return out

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        q, d, _ = self.scores(completions, meta)
        return combine(q, d, self.combination)

    def diagnostics(self, completions: Sequence[str], meta: Mapping[str, Any]) -> dict[str, float]:
        _, d, classes, q = self._compute(completions, meta)
        return {"quality": sum(q) / len(q), "diversity": sum(d) / len(d), "classes": float(len(set(classes)))}


def check_darling_config(dc, *, local_paths: bool = True) -> None:
    """Cheap checks of :class:`divtune.config.DarlingConfig` (no model is loaded): the settings fit together,
    required paths are set and (``local_paths``: they are paths on this machine) exist.  One line
    (:class:`ConfigError` / :class:`DivtuneError`) naming every required path still unset."""
    if not 0.0 <= dc.threshold <= 1.0:
        raise ConfigError(f"train.darling.threshold must be in [0, 1], got {dc.threshold}")
    if dc.partition_correct_only and dc.quality not in ("math", "list_validity"):
        raise ConfigError(f"train.darling.partition_correct_only needs a correct/incorrect quality "
                          f"(math, list_validity), got {dc.quality!r}")
    missing = []
    if dc.partitioner == "classifier" and not dc.partitioner_path:
        missing.append("train.darling.partitioner_path (the classifier partitioner's pair classifier: "
                       "a directory from divtune train-partitioner or an s3:// prefix)")
    if dc.quality == "reward_model" and not dc.reward_model_path:
        missing.append("train.darling.reward_model_path (quality: reward_model; a *ForSequenceClassification "
                       "directory or s3:// prefix)")
    if missing:
        raise ConfigError(f"required setting(s) not set: {'; '.join(missing)} -- "
                          f"e.g. --set {missing[0].split(' ')[0]}=DIR")
    if not local_paths:  # e.g. a pipeline submitted to a cluster: the paths are the cluster's
        return
    if dc.partitioner == "classifier" and not str(dc.partitioner_path).startswith("s3://") \
            and not Path(dc.partitioner_path).is_dir():
        raise DivtuneError(f"classifier path does not exist or is not a directory: {dc.partitioner_path}")
    if dc.partitioner == "classifier" and not str(dc.partitioner_path).startswith("s3://"):
        from divtune.rewards.partition import check_classifier_tokenizer

        check_classifier_tokenizer(dc.partitioner_path)  # its tokenizer builds "CLS s1 SEP s2 SEP", or one line
    if dc.quality == "reward_model":
        check_reward_model_path(dc.reward_model_path)


def build_darling_reward(dc, device: str | None = None) -> DarlingReward:
    """From :class:`divtune.config.DarlingConfig`: quality (list_validity, math, reward_model, none) x
    partition diversity; bad settings fail here, before any policy model loads.  ``device``: where the
    partitioner's model runs (training passes the rank's device; the reward model follows the current CUDA
    device, which training sets to the rank's)."""
    check_darling_config(dc)
    part = make_partitioner(dc.partitioner, dc.partitioner_path, dc.threshold,
                            max_length=getattr(dc, "partitioner_max_length", 512), device=device)
    quality = build_quality(dc)
    return DarlingReward(part, quality, diversity_floor=dc.diversity_floor, combination=dc.combination,
                         partition_correct_only=dc.partition_correct_only,
                         quality_shift=getattr(dc, "quality_shift", "none"),
                         allow_negative_quality=getattr(dc, "allow_negative_quality", False))
