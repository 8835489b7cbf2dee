"""List-selection uniformity (GAPO section 6.1): sample N answers per list, measure JSD to
uniform (with an invalid bucket), invalid rate, and positional bias with shuffled lists.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from divtune.data.lists import ListExample
from divtune.data.prompting import to_messages
from divtune.data.templates import TEMPLATES, render_prompt
from divtune.evaluate.generation import Generator, SamplingParams
from divtune.answers.metrics import answer_distribution, entropy_bits, invalid_rate, jsd_to_uniform
from divtune.answers.extract import match_item


def evaluate_lists(generator: Generator, examples: Sequence[ListExample], *, samples: int = 100,
                   temperature: float = 1.0, max_new_tokens: int = 32, seed: int = 1234,
                   positional: bool = False, system_prompt: str | None = None, few_shot: int = 0) -> dict[str, Any]:
    """Per list: answer counts, JSD to uniform, invalid rate; plus means over lists.

    With ``positional=True`` every sample sees the list in a fresh random order and the index of
    the chosen item is histogrammed (positional bias, paper Figure 2b).
    """
    if not examples:
        raise ValueError("evaluate_lists needs at least one list")
    params = SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    completions = generator.generate([to_messages(ex.prompt, system_prompt, few_shot) for ex in examples], params)
    per_list = []
    for ex, outs in zip(examples, completions, strict=True):
        answers = [match_item(o, ex.items) for o in outs]
        dist = answer_distribution(answers, ex.items)
        counts = Counter(a for a in answers if a is not None)
        per_list.append({
            "id": ex.id,
            "category": ex.category,
            "items": list(ex.items),
            "counts": {item: counts.get(item, 0) for item in ex.items},
            "invalid": sum(a is None for a in answers),
            "jsd": jsd_to_uniform(dist),
            "invalid_rate": invalid_rate(answers),
            "entropy": entropy_bits(answers),
            "unique": len(counts),
            "examples_invalid": [o for o, a in zip(outs, answers) if a is None][:3],
        })
    result: dict[str, Any] = {
        "jsd_mean": float(np.mean([r["jsd"] for r in per_list])),
        "invalid_rate": float(np.mean([r["invalid_rate"] for r in per_list])),
        "entropy_mean": float(np.mean([r["entropy"] for r in per_list])),
        "num_lists": len(per_list),
        "samples_per_list": samples,
        "sampling": params.to_dict(),
        "generator": generator.describe(),
        "per_list": per_list,
    }
    if positional:
        result["positional"] = positional_bias(generator, examples, samples=samples, temperature=temperature,
                                               max_new_tokens=max_new_tokens, seed=seed,
                                               system_prompt=system_prompt, few_shot=few_shot)
    return result


def positional_bias(generator: Generator, examples: Sequence[ListExample], *, samples: int, temperature: float,
                    max_new_tokens: int, seed: int, system_prompt: str | None = None,
                    few_shot: int = 0) -> dict[str, Any]:
    """Index histogram of the chosen item when each prompt shows the list in a random order."""
    rng = random.Random(seed)
    prompts, orders = [], []
    for ex in examples:
        for _ in range(samples):
            order = list(ex.items)
            rng.shuffle(order)
            orders.append(order)
            prompts.append(to_messages(render_prompt(TEMPLATES[ex.template_id], order), system_prompt, few_shot))
    outs = generator.generate(prompts, SamplingParams(n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    max_len = max(len(o) for o in orders)
    hist = np.zeros(max_len + 1)
    for order, out in zip(orders, outs, strict=True):
        a = match_item(out[0], order)
        hist[order.index(a) if a is not None else max_len] += 1
    hist /= hist.sum()
    return {"index_histogram": hist[:-1].tolist(), "invalid_rate": float(hist[-1])}
