"""NoveltyBench's metrics (Zhang et al. 2025, arXiv 2504.05228), the evaluation DARLING reports.

Per prompt, ``k`` generations are sampled independently; the project's partitioners
(:mod:`divtune.rewards.partition`: ``exact``, ``embedding``, ``classifier``) split them into equivalence
classes, and

* ``distinct_k`` (:func:`divtune.answers.metrics.distinct_k`) is the number of classes;
* ``utility_k`` (:func:`divtune.answers.metrics.utility_k`) is the patience-weighted (``p = 0.8``) mean of
  per-generation scores, where a generation that opens a new class scores its quality and a generation
  equivalent to an earlier one scores 0 -- the reference's ``src/score.py`` in ``novelty-bench/novelty-bench``.

Both are reported as means over prompts, with every prompt's classes, scores and generations.

Quality, one of

* ``reward_model``: a ``*ForSequenceClassification`` reward model
  (:class:`divtune.rewards.quality.RewardModelQuality`: the user/assistant pair through its chat template, the
  scalar logit).  ``reward_scale: novelty-bench`` maps the
  raw score to NoveltyBench's integer 1..10 with the reference's cutoffs, which were fitted to
  Skywork-Reward-Gemma-2-27B-v0.2 (meaningless for another reward model); ``raw`` keeps the score;
* ``math`` / ``list_validity``: the task's own 0/1 quality (:mod:`divtune.rewards.quality`), reading the prompt
  line's ``answer`` / ``items`` fields;
* ``none``: every generation has quality 1, so ``utility_k`` measures novelty alone (the default when no
  reward model is given).

Only a class's first generation is scored (the others score 0 whatever their quality).

DARLING's release scores NoveltyBench its own way (``evals/novelty-bench/src/score.py`` at commit c07a323, read
from the ``rrenaud/darling`` copy): utility is the *sum* of the class openers' scores divided by k, without
patience weighting -- ``patience=1`` here (``--patience 1``) gives exactly that.

Differences from the reference, named: NoveltyBench partitions greedily (a generation joins the first class
whose *first member* it matches); the project's partitioners close pairwise matches transitively
(union-find) and first merge texts equal after lower-casing and whitespace collapsing, so on chains of
near-matches they can merge more.  The reference's classifier is its own DeBERTa-v3-large (threshold 0.102);
pass one with ``partitioner: classifier``.

Prompts file (the NB-Curated JSONL shape): one JSON object per line with a non-empty string ``prompt``; ``id``
(string) is optional (default ``line-N``); other fields (``category``, ``prompt_paraphrases``, ``answer``, ...)
are kept as the prompt's metadata for the quality function.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from divtune.answers.metrics import NOVELTY_PATIENCE, distinct_k, novel_mask, utility_k
from divtune.data.prompting import to_messages
from divtune.errors import DataError, DivtuneError
from divtune.evaluate.generation import Generator, SamplingParams

SUITE = "novelty"
#: NoveltyBench's generations per prompt (``src/inference.py --num-generations 10``).
DEFAULT_K = 10
PARTITIONERS = ("exact", "embedding", "classifier")
QUALITIES = ("reward_model", "math", "list_validity", "none")
REWARD_SCALES = ("raw", "novelty-bench")
#: Per-kind default similarity thresholds (those of :func:`divtune.rewards.partition.make_partitioner`'s
#: classes: cosine >= 0.8 for embeddings, P(similar) > 0.5 for a classifier).
DEFAULT_THRESHOLDS = {"embedding": 0.8, "classifier": 0.5}
#: The reference's cutoffs of Skywork-Reward-Gemma-2-27B-v0.2's raw score: ``bisect_left(cutoffs, r) + 1``
#: is the quality 1..10 (``novelty-bench/novelty-bench`` ``src/score.py``, ``reward_thresholds``).
NOVELTY_BENCH_REWARD_CUTOFFS = (-7.71875, -6.28125, -6.0, -5.71875, -5.5, -5.0, -4.375, -3.4375, -2.046875)


@dataclass(frozen=True)
class NoveltyPrompt:
    id: str
    prompt: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_novelty_prompts(path: str | os.PathLike) -> list[NoveltyPrompt]:
    """The prompts of a NoveltyBench-shaped JSONL file (see the module doc); errors name the file and line."""
    from divtune import files
    from divtune.data.jsonl import read_objects

    out: list[NoveltyPrompt] = []
    ids: set[str] = set()
    for n, where, row in read_objects(path, noun="novelty prompts", expected='an object with a "prompt"'):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{where}: needs a non-empty string field 'prompt'")
        pid = row.get("id", f"line-{n}")
        if not isinstance(pid, str) or not pid.strip():
            raise DataError(f"{where}: 'id' must be a non-empty string")
        if pid in ids:
            raise DataError(f"{where}: duplicate id {pid!r}")
        ids.add(pid)
        out.append(NoveltyPrompt(pid, prompt, {k: v for k, v in row.items() if k not in ("id", "prompt")}))
        if len(out) > files.limit("PROMPTS"):
            raise DataError(f"novelty prompts file {path} holds more than {files.limit('PROMPTS')} prompts "
                            "(DIVTUNE_MAX_PROMPTS)")
    if not out:
        raise DataError(f"novelty prompts file {path} has no prompts")
    return out


# --------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------


class NoveltyQuality:
    """``score(prompt, completions) -> list[float]`` from one of the project's quality functions."""

    def __init__(self, kind: str | None = None, reward_model: str | os.PathLike | None = None, *,
                 reward_scale: str = "raw") -> None:
        kind = kind or ("reward_model" if reward_model else "none")
        if kind not in QUALITIES:
            raise DivtuneError(f"--quality: unknown {kind!r} (known: {', '.join(QUALITIES)})")
        if reward_scale not in REWARD_SCALES:
            raise DivtuneError(f"--reward-scale: unknown {reward_scale!r} (known: {', '.join(REWARD_SCALES)})")
        if kind == "reward_model" and not reward_model:
            raise DivtuneError("--quality reward_model needs --reward-model DIR|s3://... (a sequence-classification "
                               "reward model)")
        if kind != "reward_model" and reward_model:
            raise DivtuneError(f"--reward-model is for --quality reward_model, not {kind}")
        if kind != "reward_model" and reward_scale != "raw":
            raise DivtuneError("--reward-scale applies to --quality reward_model only")
        self.kind, self.reward_scale = kind, reward_scale
        self.path = str(reward_model) if reward_model else None
        self._fn: Any = None
        if kind == "reward_model":
            from divtune.rewards.quality import RewardModelQuality

            self._fn = RewardModelQuality(reward_model)
        elif kind == "math":
            from divtune.rewards.quality import MathQuality

            self._fn = MathQuality()
        elif kind == "list_validity":
            from divtune.rewards.quality import list_validity_quality

            self._fn = list_validity_quality
        else:
            from divtune.rewards.quality import NoQuality

            self._fn = NoQuality()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "reward_model":
            out.update(path=self.path, scale=self.reward_scale)
        if self.kind == "none":
            out["note"] = "every generation has quality 1: utility_k measures novelty alone"
        return out

    def score(self, prompt: NoveltyPrompt, completions: Sequence[str]) -> list[float]:
        if not completions:
            return []
        if self.kind == "reward_model":
            raw = self._fn.score([prompt.prompt] * len(completions), list(completions))
            if self.reward_scale == "novelty-bench":
                return [float(bisect.bisect_left(NOVELTY_BENCH_REWARD_CUTOFFS, r) + 1) for r in raw]
            return [float(r) for r in raw]
        meta: Mapping[str, Any] = {**prompt.meta, "question": prompt.prompt}
        try:
            return [float(q) for q in self._fn(list(completions), meta)]
        except DivtuneError as exc:
            raise DataError(f"novelty prompt {prompt.id!r}: {exc}") from None


# --------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------


def make_novelty_partitioner(kind: str = "exact", path: str | os.PathLike | None = None,
                             threshold: float | None = None, *, max_length: int = 512,
                             device: str | None = None) -> tuple[Any, dict[str, Any]]:
    """``(partitioner, description)`` from :func:`divtune.rewards.partition.make_partitioner`; a model-based one
    runs on ``device`` (default: the GPU when there is one, else the CPU)."""
    from divtune.rewards.partition import make_partitioner

    if kind not in PARTITIONERS:
        raise DivtuneError(f"--partitioner: unknown {kind!r} (known: {', '.join(PARTITIONERS)})")
    if kind == "classifier" and not path:
        raise DivtuneError("--partitioner classifier needs --partitioner-path DIR|s3://... (a pair classifier, "
                           "e.g. from divtune train-partitioner)")
    if kind == "exact" and (path or threshold is not None):
        raise DivtuneError("--partitioner-path and --threshold apply to the embedding and classifier partitioners")
    t = DEFAULT_THRESHOLDS.get(kind, 0.0) if threshold is None else float(threshold)
    if device is None and kind != "exact":
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    part = make_partitioner(kind, str(path) if path else None, t, max_length=max_length, device=device)
    desc: dict[str, Any] = {"kind": kind, "closure": "union-find over matching pairs"}
    if kind != "exact":
        desc.update(threshold=t, path=str(path) if path else "all-MiniLM-L6-v2 (packaged)")
    return part, desc


def evaluate_novelty(generator: Generator, prompts: Sequence[NoveltyPrompt], *, k: int = DEFAULT_K,
                     partitioner: Any = None, partitioner_info: Mapping[str, Any] | None = None,
                     quality: NoveltyQuality | None = None, patience: float = NOVELTY_PATIENCE,
                     temperature: float = 1.0, max_new_tokens: int = 512, seed: int = 1234,
                     system_prompt: str | None = None, sampling: SamplingParams | None = None) -> dict[str, Any]:
    """Sample ``k`` generations per prompt, partition them, score the class openers; distinct_k and utility_k.

    ``sampling`` is the whole sampling contract (its ``n`` becomes ``k``); without it, ``temperature``,
    ``max_new_tokens`` and ``seed`` with the contract's neutral filters.

    Result keys: ``distinct_k``, ``utility_k`` (means over prompts), ``k``, ``patience``, ``num_prompts``,
    ``partitioner``, ``quality``, ``per_prompt`` (id, prompt, ``distinct``, ``utility``, ``classes``,
    ``scores`` = what each generation contributes, ``generations``), ``sampling``, ``generator``.
    """
    prompts = list(prompts)
    if not prompts:
        raise DataError("evaluate novelty needs at least one prompt")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DivtuneError(f"novelty k must be an integer >= 2 (classes need at least two generations), got {k!r}")
    if not 0.0 < patience <= 1.0:
        raise DivtuneError(f"novelty patience must be in (0, 1], got {patience}")
    if partitioner is None:
        partitioner, partitioner_info = make_novelty_partitioner("exact")
    quality = quality if quality is not None else NoveltyQuality("none")
    params = (dataclasses.replace(sampling, n=k) if sampling is not None else
              SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    completions = generator.generate([to_messages(p.prompt, system_prompt) for p in prompts], params)
    per_prompt = []
    for p, outs in zip(prompts, completions, strict=True):
        outs = list(outs)
        classes = list(partitioner.partition(outs))
        novel = novel_mask(classes)
        openers = [i for i, new in enumerate(novel) if new]
        q_open = quality.score(p, [outs[i] for i in openers])
        q = [0.0] * len(outs)
        for i, v in zip(openers, q_open, strict=True):
            q[i] = v
        per_prompt.append({
            "id": p.id,
            "prompt": p.prompt,
            "distinct": distinct_k(classes),
            "utility": utility_k(classes, q, patience),
            "classes": classes,
            "scores": list(q),  # 0 for every generation that opens no class
            "generations": outs,
        })
    return {
        "suite": SUITE,
        "distinct_k": float(np.mean([r["distinct"] for r in per_prompt])),
        "utility_k": float(np.mean([r["utility"] for r in per_prompt])),
        "k": k,
        "samples": k,
        "patience": patience,
        "num_prompts": len(per_prompt),
        "partitioner": dict(partitioner_info or {"kind": getattr(partitioner, "name", "?")}),
        "quality": quality.describe(),
        "system_prompt": system_prompt,
        "sampling": params.to_dict(),
        "generator": generator.describe(),
        "per_prompt": per_prompt,
    }
