"""Quality rewards for DARLING: ``quality(completions, meta) -> list[float]``, one value per completion.

* :func:`list_validity_quality` -- 1 when the answer is one of the listed items (``meta["items"]``).
* :class:`MathQuality` -- verifiable math: the final answer (``\\boxed{}``, ``<answer>`` tags, ``#### N``,
  else the last number) equals the reference (``meta["answer"]``, GSM8K's ``... #### N`` accepted)
  numerically (integers, decimals, fractions, thousands commas) or, failing that, symbolically
  (``sympy.simplify(a - b) == 0`` on a whitelisted expression, under a timeout).
* :class:`RewardModelQuality` -- a reward model's score of (``meta["question"]``, completion): any
  ``*ForSequenceClassification`` checkpoint, batched; the scalar logit (one label) or P(label 1).
* :class:`NoQuality` -- 1 for everything (diversity alone).

Each carries ``meta_keys``: the dataset columns it reads (what the TRL adapter passes through).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError
from divtune.answers.extract import match_item
from divtune.answers.math import answers_equal, extract_final_answer, gold_answer

# --------------------------------------------------------------------------------------
# list validity
# --------------------------------------------------------------------------------------


def list_validity_quality(completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
    items = meta.get("items")
    if not isinstance(items, (list, tuple)) or len(items) < 2:
        raise DivtuneError("list-validity quality needs meta['items'] with at least two items")
    return [1.0 if match_item(c, items) is not None else 0.0 for c in completions]


list_validity_quality.meta_keys = ("items",)  # type: ignore[attr-defined]
list_validity_quality.binary = True  # type: ignore[attr-defined]


class NoQuality:
    """Every response has quality 1: the DARLING reward is the diversity score alone."""

    name = "none"
    meta_keys: tuple[str, ...] = ()
    binary = False

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        return [1.0] * len(completions)


# --------------------------------------------------------------------------------------
# math
# --------------------------------------------------------------------------------------

class MathQuality:
    """1 when the completion's final answer equals ``meta["answer"]``, else 0 (verifiable correctness)."""

    name = "math"
    meta_keys: tuple[str, ...] = ("answer",)
    binary = True

    def __init__(self, *, use_sympy: bool = True, timeout_s: float = 2.0) -> None:
        self.use_sympy = use_sympy
        self.timeout_s = timeout_s

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        if "answer" not in meta:
            raise DivtuneError("math quality needs meta['answer'] (the reference answer column)")
        gold = gold_answer(meta["answer"])
        return [1.0 if answers_equal(extract_final_answer(c), gold, use_sympy=self.use_sympy,
                                     timeout_s=self.timeout_s) else 0.0 for c in completions]


# --------------------------------------------------------------------------------------
# reward model
# --------------------------------------------------------------------------------------


def check_reward_model_path(path: str | os.PathLike | None) -> None:
    """Cheap check (no loading): set, and an existing directory unless it is an ``s3://`` prefix."""
    if not path:
        raise DivtuneError("train.darling.reward_model_path is required for quality: reward_model "
                           "(a local *ForSequenceClassification directory or s3:// prefix; "
                           "e.g. --set train.darling.reward_model_path=DIR)")
    if not str(path).startswith("s3://") and not Path(path).is_dir():
        raise DivtuneError(f"reward model path does not exist or is not a directory: {path}")


class RewardModelQuality:
    """A reward model's score of (prompt, completion), batched.

    The prompt is ``meta[prompt_key]`` (default ``question``: the raw user prompt column).  With a chat
    template the pair is rendered as a user/assistant conversation, otherwise encoded as a sentence pair.
    Score: the logit for one-label (regression) heads, P(label 1) for classification heads.
    """

    name = "reward_model"
    binary = False

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 8, max_length: int = 2048,
                 device: str | None = None, prompt_key: str = "question") -> None:
        import torch

        from divtune.models.loading import load_sequence_classifier, local_model_path

        check_reward_model_path(path)
        local = local_model_path(path, "reward model")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else None
        self.tokenizer, self.model = load_sequence_classifier(local, "reward model", dtype=dtype)
        self.model.to(self.device)
        self.num_labels = int(self.model.config.num_labels)
        self.batch_size = batch_size
        self.max_length = max_length
        self.prompt_key = prompt_key
        self.meta_keys: tuple[str, ...] = (prompt_key,)
        self.path = str(path)

    def _encode(self, prompts: Sequence[str], completions: Sequence[str]):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                                             tokenize=False) for p, c in zip(prompts, completions)]
            return tok(texts, truncation=True, max_length=self.max_length, padding=True, add_special_tokens=False,
                       return_tensors="pt")
        return tok(list(prompts), list(completions), truncation=True, max_length=self.max_length, padding=True,
                   return_tensors="pt")

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        import torch

        out: list[float] = []
        with torch.inference_mode():
            for s in range(0, len(completions), self.batch_size):
                enc = self._encode(prompts[s : s + self.batch_size], completions[s : s + self.batch_size])
                logits = self.model(**enc.to(self.model.device)).logits.float()
                vals = logits[:, 0] if self.num_labels == 1 else logits.softmax(-1)[:, 1]
                out += vals.tolist()
        return out

    def __call__(self, completions: Sequence[str], meta: Mapping[str, Any]) -> list[float]:
        prompt = meta.get(self.prompt_key)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DivtuneError(f"reward-model quality needs the prompt text in meta[{self.prompt_key!r}] "
                               f"(a {self.prompt_key!r} column in the training data)")
        return self.score([prompt] * len(completions), list(completions))


def build_quality(dc) -> Any:
    """The quality reward named by :class:`divtune.config.DarlingConfig` ``quality``."""
    if dc.quality == "list_validity":
        return list_validity_quality
    if dc.quality == "math":
        return MathQuality()
    if dc.quality == "reward_model":
        return RewardModelQuality(dc.reward_model_path)
    if dc.quality == "none":
        return NoQuality()
    raise DivtuneError(f"unknown darling quality {dc.quality!r} (list_validity, math, reward_model, none)")
