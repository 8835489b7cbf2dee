"""The one sampling contract: what every generation backend and training send, explicitly.

:class:`SamplingParams` carries temperature, top_p, top_k, min_p, repetition_penalty, max new tokens, seed and n.
Each backend turns it into its own request, and none of them leaves a field to the model's defaults
(``generation_config.json`` sets e.g. ``repetition_penalty: 1.05`` for Qwen2.5-Instruct; transformers and vLLM
servers fill any field a request leaves out from it):

* :meth:`SamplingParams.hf_generation_config` -- transformers' ``GenerationConfig`` fields, the other logits
  processors that a model's generation config can switch on pinned off (:data:`HF_NEUTRAL`);
* :meth:`SamplingParams.vllm_kwargs` -- vLLM's ``SamplingParams`` (offline engine) and, without ``n``/``seed``,
  the extra body fields of ``vllm serve``;
* :meth:`SamplingParams.trl_kwargs` -- TRL ``GRPOConfig`` fields of the training rollouts.

Conventions: ``top_k = 0`` and ``min_p = 0`` disable those filters; ``temperature = 0`` decodes greedily;
``repetition_penalty = 1`` is no penalty.  Bad values are one :class:`~divtune.errors.DivtuneError` line.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from divtune.errors import DivtuneError

#: transformers logits processors a model's ``generation_config.json`` can switch on, pinned to "off": with them
#: set, a GenerationConfig built from the contract leaves nothing about the sampling distribution to the model.
HF_NEUTRAL: dict[str, Any] = {
    "num_beams": 1,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "min_new_tokens": 0,
}

#: The fields of the contract, in the order outputs record them.
FIELDS = ("n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens", "seed")


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: disabled
    min_p: float = 0.0  # 0: disabled
    repetition_penalty: float = 1.0  # 1: none
    max_new_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> DivtuneError:
            return DivtuneError(f"sampling: {name} {getattr(self, name)!r} must be {rule}")

        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise bad(name, "a finite number")
        for name in ("n", "top_k", "max_new_tokens", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(name, "an integer")
        if self.n < 1:
            raise bad("n", ">= 1")
        if self.temperature < 0:
            raise bad("temperature", ">= 0 (0 decodes greedily)")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]")
        if self.top_k < 0:
            raise bad("top_k", ">= 0 (0 disables it)")
        if not 0 <= self.min_p <= 1:
            raise bad("min_p", "in [0, 1] (0 disables it)")
        if not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "> 0 (1 is no penalty)")
        if self.max_new_tokens < 1:
            raise bad("max_new_tokens", ">= 1")
        if self.seed < 0:
            raise bad("seed", ">= 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hf_generation_config(self) -> dict[str, Any]:
        """The fields of a transformers ``GenerationConfig``: every sampling field set, none left to the model."""
        d: dict[str, Any] = {**HF_NEUTRAL, "do_sample": not self.greedy, "max_new_tokens": self.max_new_tokens,
                             "repetition_penalty": float(self.repetition_penalty)}
        if not self.greedy:  # greedy decoding applies none of the sampling filters (transformers skips them)
            d.update(temperature=float(self.temperature), top_p=float(self.top_p), top_k=int(self.top_k),
                     min_p=float(self.min_p))
        return d

    def vllm_kwargs(self) -> dict[str, Any]:
        """vLLM ``SamplingParams`` keyword arguments (``top_k = -1`` is vLLM's "disabled" in every version)."""
        return {"n": self.n, "temperature": float(self.temperature), "top_p": float(self.top_p),
                "top_k": self.top_k if self.top_k else -1, "min_p": float(self.min_p),
                "repetition_penalty": float(self.repetition_penalty), "max_tokens": self.max_new_tokens,
                "seed": self.seed}

    def trl_kwargs(self, use_vllm: bool = False) -> dict[str, Any]:
        """TRL ``GRPOConfig`` fields of the rollouts.  TRL leaves ``min_p`` None by default, which transformers
        then fills from the model's generation config, so it is always set; on the transformers path
        ``generation_kwargs`` pins the other processors off (vLLM's sampler has none of them)."""
        kw: dict[str, Any] = {"temperature": float(self.temperature), "top_p": float(self.top_p),
                              "top_k": int(self.top_k), "min_p": float(self.min_p),
                              "repetition_penalty": float(self.repetition_penalty)}
        kw["generation_kwargs"] = None if use_vllm else dict(HF_NEUTRAL)
        return kw


def from_config(section: Any, *, n: int = 1, max_new_tokens: int | None = None, seed: int | None = None,
                temperature: float | None = None) -> SamplingParams:
    """The contract from a config section with ``temperature, top_p, top_k, min_p, repetition_penalty`` (and
    ``max_new_tokens``/``seed`` where it has them); keyword arguments override."""
    return SamplingParams(
        n=n,
        temperature=section.temperature if temperature is None else temperature,
        top_p=section.top_p, top_k=section.top_k, min_p=section.min_p,
        repetition_penalty=section.repetition_penalty,
        max_new_tokens=max_new_tokens if max_new_tokens is not None else section.max_new_tokens,
        seed=seed if seed is not None else section.seed,
    )
