"""Open-set diversity (GAPO section 6.2, Figure 5): ask for one item of a category N times and
count the distinct answers (Unique@N), per category and averaged over categories.

Answers are normalised with :func:`divtune.data.open_set.normalize_answer`; an empty normalised
answer is *invalid* (counted in ``invalid_rate``, never as a unique answer).  There is no
validity check against a closed set: in an open set any non-empty answer counts, so a model
that rambles inflates Unique@N (every sentence is its own "answer") — read it together with
``answer_tag_rate`` (the fraction of completions with a complete ``<answer>…</answer>`` span,
i.e. that followed the requested format) and ``top_answers``.

Two conventions, both always reported.  The GAPO paper (section 6.2, Figure 5, Table 8's Unique@500) asks
the plain "Name one city anywhere in the world" and describes no answer normalisation:

* ``unique_at_n_exact``: distinct completions as exact strings after stripping surrounding whitespace (the
  paper's count as far as it is described); with ``paper_prompts=True`` the built-in categories are asked in
  that plain wording, without the ``<answer>`` format line -- the setting to compare with the paper;
* ``unique_at_n``: distinct *normalised* answers (the gate's metric; lower than the exact count, since
  "Paris", "paris." and "<answer>Paris</answer>" are one answer).
"""

from __future__ import annotations

import dataclasses

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtune.data.open_set import OpenSetPrompt, default_prompts, normalize_answer
from divtune.data.prompting import to_messages
from divtune.evaluate.generation import Generator, SamplingParams
from divtune.answers.metrics import cumulative_unique, entropy_bits, unique_at_n

SUITE = "open-set"
_TAGGED = re.compile(r"<answer>.*?</answer>", re.IGNORECASE | re.DOTALL)


def evaluate_open_set(generator: Generator, prompts: Sequence[OpenSetPrompt] | None = None, *, samples: int = 500,
                      temperature: float = 1.0, max_new_tokens: int = 32, seed: int = 1234,
                      system_prompt: str | None = None, few_shot: int = 0,
                      top: int = 10, paper_prompts: bool = False,
                      sampling: SamplingParams | None = None) -> dict[str, Any]:
    """Sample ``samples`` answers per category prompt; Unique@N, top answers, invalid rate, curves.

    Result keys: ``unique_at_n`` (mean over categories, normalised answers), ``unique_at_n_exact`` (mean over
    categories, exact stripped completions), ``unique_at_n_by_category``, ``unique_at_n_exact_by_category``,
    ``invalid_rate`` (mean), ``answer_tag_rate`` (mean), ``entropy_mean`` (bits, valid answers), ``cumulative_unique``
    (category -> list, Unique@k for k = 1..N), ``per_category`` (prompt, counts, top answers,
    raw examples), ``sampling``, ``generator``.  ``system_prompt``/``few_shot`` add the chat
    system message and worked list-selection ``<answer>`` turns of :mod:`divtune.data.prompting`
    (for models trained with them; the shots' lists are not from these categories).
    """
    if paper_prompts and prompts is not None:
        raise ValueError("paper_prompts uses the built-in categories; do not pass prompts as well")
    prompts = list(prompts) if prompts is not None else default_prompts(answer_format=not paper_prompts)
    if not prompts:
        raise ValueError("evaluate_open_set needs at least one prompt")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    params = (dataclasses.replace(sampling, n=samples) if sampling is not None else
              SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    completions = generator.generate([to_messages(p.prompt, system_prompt, few_shot) for p in prompts], params)
    per_category, curves = [], {}
    for p, outs in zip(prompts, completions, strict=True):
        answers = [normalize_answer(o) for o in outs]
        tagged = sum(bool(_TAGGED.search(o)) for o in outs) / len(outs)
        valid = [a for a in answers if a]
        counts = Counter(valid)
        per_category.append({
            "category": p.category,
            "prompt": p.prompt,
            "unique": unique_at_n(answers),
            "unique_exact": unique_at_n([o.strip() for o in outs]),
            "invalid_rate": 1.0 - len(valid) / len(answers),
            "answer_tag_rate": tagged,
            "entropy": entropy_bits(valid) if valid else 0.0,
            "top_answers": [[a, c] for a, c in counts.most_common(top)],
            "answer_counts": dict(counts.most_common()),
            "examples": outs[:5],
        })
        curves[p.category] = cumulative_unique(answers)
    return {
        "suite": SUITE,
        "unique_at_n": float(np.mean([r["unique"] for r in per_category])),
        "unique_at_n_by_category": {r["category"]: r["unique"] for r in per_category},
        "unique_at_n_exact": float(np.mean([r["unique_exact"] for r in per_category])),
        "unique_at_n_exact_by_category": {r["category"]: r["unique_exact"] for r in per_category},
        "paper_prompts": paper_prompts,
        "invalid_rate": float(np.mean([r["invalid_rate"] for r in per_category])),
        "answer_tag_rate": float(np.mean([r["answer_tag_rate"] for r in per_category])),
        "entropy_mean": float(np.mean([r["entropy"] for r in per_category])),
        "cumulative_unique": curves,
        "num_categories": len(per_category),
        "samples": samples,
        "system_prompt": system_prompt,
        "few_shot": few_shot,
        "sampling": params.to_dict(),
        "generator": generator.describe(),
        "per_category": per_category,
    }
