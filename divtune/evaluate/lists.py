"""List-selection uniformity (GAPO section 6.1): sample N answers per list, measure JSD to
uniform (with an invalid bucket), invalid rate, and positional bias with shuffled lists; and the same metrics
with a verbalized-sampling prompt (a no-training baseline).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtune.data.lists import ListExample
from divtune.data.prompting import to_messages
from divtune.data.templates import TEMPLATES, render_prompt
from divtune.evaluate.generation import Generator, SamplingParams
from divtune.answers.metrics import (answer_distribution, entropy_bits, invalid_rate, js_distance_to_uniform,
                                     jsd_to_uniform)
from divtune.answers.extract import match_item


def evaluate_lists(generator: Generator, examples: Sequence[ListExample], *, samples: int = 100,
                   temperature: float = 1.0, max_new_tokens: int = 32, seed: int = 1234,
                   positional: bool = False, system_prompt: str | None = None, few_shot: int = 0,
                   sampling: SamplingParams | None = None) -> dict[str, Any]:
    """Per list: answer counts, JSD to uniform, invalid rate; plus means over lists.

    ``sampling`` is the whole sampling contract (its ``n`` becomes ``samples``); without it, ``temperature``,
    ``max_new_tokens`` and ``seed`` with the contract's neutral filters.  The result's ``sampling`` records it.
    With ``positional=True`` every sample sees the list in a fresh random order and the index of
    the chosen item is histogrammed (positional bias, paper Figure 2b).
    """
    if not examples:
        raise ValueError("evaluate_lists needs at least one list")
    params = (dataclasses.replace(sampling, n=samples) if sampling is not None else
              SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    completions = generator.generate([to_messages(ex.prompt, system_prompt, few_shot) for ex in examples], params)
    answers = [[match_item(o, ex.items) for o in outs] for ex, outs in zip(examples, completions, strict=True)]
    result = summarise(examples, answers, completions, params, generator)
    if positional:
        result["positional"] = positional_bias(generator, examples, samples=samples, sampling=params,
                                               system_prompt=system_prompt, few_shot=few_shot)
    return result


def summarise(examples: Sequence[ListExample], answers: Sequence[Sequence[str | None]],
              completions: Sequence[Sequence[str]], params: SamplingParams, generator: Generator,
              **extra: Any) -> dict[str, Any]:
    """The lists result from each list's chosen items (``None``: invalid) and the raw completions."""
    per_list = []
    for ex, ans, outs in zip(examples, answers, completions, strict=True):
        dist = answer_distribution(list(ans), ex.items)
        counts = Counter(a for a in ans if a is not None)
        per_list.append({
            "id": ex.id,
            "category": ex.category,
            "items": list(ex.items),
            "counts": {item: counts.get(item, 0) for item in ex.items},
            "invalid": sum(a is None for a in ans),
            "jsd": jsd_to_uniform(dist),
            "js_distance": js_distance_to_uniform(dist),
            "invalid_rate": invalid_rate(list(ans)),
            "entropy": entropy_bits(list(ans)),
            "unique": len(counts),
            "examples_invalid": [o for o, a in zip(outs, ans) if a is None][:3],
        })
    return {
        "jsd_mean": float(np.mean([r["jsd"] for r in per_list])),
        "js_distance_mean": float(np.mean([r["js_distance"] for r in per_list])),
        "jsd_convention": "jsd: Jensen-Shannon divergence, base 2 (bits); js_distance: its square root",
        "invalid_rate": float(np.mean([r["invalid_rate"] for r in per_list])),
        "entropy_mean": float(np.mean([r["entropy"] for r in per_list])),
        "num_lists": len(per_list),
        "samples_per_list": params.n,
        "sampling": params.to_dict(),
        "generator": generator.describe(),
        **extra,
        "per_list": per_list,
    }


#: Verbalized sampling (Zhang et al. 2025, arXiv 2510.01171): ask for several answers with probabilities, then
#: draw one of them by the stated probabilities.  The format keeps the lists suite's ``<answer>`` tag.
VERBALIZED_INSTRUCTION = ("Give {k} different candidate answers, each with the probability (between 0 and 1) that "
                          "you would give it, one per line, formatted as <answer>item</answer> "
                          "<probability>p</probability>.")
_VS_PAIR = re.compile(r"<answer>(.*?)</answer>\s*(?:<probability>\s*([0-9]*\.?[0-9]+)\s*</probability>)?",
                      re.IGNORECASE | re.DOTALL)


def verbalized_choice(text: str, items: Sequence[str], rng: random.Random) -> str | None:
    """One listed item drawn from a verbalized answer by its stated probabilities (candidates without one, or
    all at zero, share equally); ``None`` when no candidate is a listed item."""
    cands: list[tuple[str, float | None]] = []
    for span, prob in _VS_PAIR.findall(text):
        item = match_item(f"<answer>{span}</answer>", items)
        if item is not None:
            cands.append((item, float(prob) if prob else None))
    if not cands:
        return None
    weights = [p if p is not None else 0.0 for _, p in cands]
    if not sum(weights) > 0:
        weights = [1.0] * len(cands)
    return rng.choices([c for c, _ in cands], weights=weights, k=1)[0]


def evaluate_lists_verbalized(generator: Generator, examples: Sequence[ListExample], *, samples: int,
                              sampling: SamplingParams, k: int = 5, system_prompt: str | None = None,
                              few_shot: int = 0) -> dict[str, Any]:
    """The lists suite with a verbalized-sampling prompt: each completion states ``k`` answers with probabilities,
    one is drawn (seeded by ``sampling.seed``); metrics as :func:`evaluate_lists`.  ``sampling.max_new_tokens``
    must leave room for ``k`` answers."""
    params = dataclasses.replace(sampling, n=samples)
    prompts = [to_messages(f"{ex.prompt} {VERBALIZED_INSTRUCTION.format(k=k)}", system_prompt, few_shot)
               for ex in examples]
    completions = generator.generate(prompts, params)
    rng = random.Random(sampling.seed)
    answers = [[verbalized_choice(o, ex.items, rng) for o in outs]
               for ex, outs in zip(examples, completions, strict=True)]
    return summarise(examples, answers, completions, params, generator,
                     prompting={"verbalized_sampling": {"k": k, "instruction": VERBALIZED_INSTRUCTION.format(k=k)}})


def positional_bias(generator: Generator, examples: Sequence[ListExample], *, samples: int,
                    sampling: SamplingParams, system_prompt: str | None = None,
                    few_shot: int = 0) -> dict[str, Any]:
    """Index histogram of the chosen item when each prompt shows the list in a random order."""
    seed = sampling.seed
    rng = random.Random(seed)
    prompts, orders = [], []
    for ex in examples:
        for _ in range(samples):
            order = list(ex.items)
            rng.shuffle(order)
            orders.append(order)
            prompts.append(to_messages(render_prompt(TEMPLATES[ex.template_id], order), system_prompt, few_shot))
    outs = generator.generate(prompts, dataclasses.replace(sampling, n=1))
    max_len = max(len(o) for o in orders)
    hist = np.zeros(max_len + 1)
    for order, out in zip(orders, outs, strict=True):
        a = match_item(out[0], order)
        hist[order.index(a) if a is not None else max_len] += 1
    hist /= hist.sum()
    return {"index_histogram": hist[:-1].tolist(), "invalid_rate": float(hist[-1])}
