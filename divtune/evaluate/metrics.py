"""Pure diversity metrics (definitions follow the GAPO paper, section 6).

Every function takes plain Python data and returns floats; no I/O, no models.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon


def answer_distribution(answers: Iterable[str | None], items: Sequence[str]) -> np.ndarray:
    """Empirical distribution over ``items`` plus a final "invalid" bucket (``None`` answers).

    Answers must already be canonical items (see :func:`divtune.rewards.extract.match_item`).
    """
    index = {item: i for i, item in enumerate(items)}
    counts = np.zeros(len(items) + 1, dtype=float)
    n = 0
    for a in answers:
        counts[index[a] if a is not None and a in index else len(items)] += 1
        n += 1
    if n == 0:
        raise ValueError("answer_distribution needs at least one answer")
    return counts / n


def jsd_to_uniform(distribution: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) to the uniform over the valid items.

    ``distribution`` has one entry per item plus a last entry for invalid answers; the target
    puts 1/L on each item and 0 on "invalid".  scipy returns the JS *distance*: squared here.
    """
    p = np.asarray(distribution, dtype=float)
    if p.ndim != 1 or p.size < 2:
        raise ValueError("distribution needs at least one item and the invalid bucket")
    num_items = p.size - 1
    q = np.append(np.full(num_items, 1.0 / num_items), 0.0)
    return float(jensenshannon(p, q, base=2) ** 2)


def invalid_rate(answers: Sequence[str | None]) -> float:
    if not answers:
        raise ValueError("invalid_rate needs at least one answer")
    return sum(a is None for a in answers) / len(answers)


def entropy_bits(answers: Iterable[str | None]) -> float:
    """Shannon entropy (bits) of the empirical distribution of answers (invalid is one outcome)."""
    counts = Counter(answers)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("entropy_bits needs at least one answer")
    return float(-sum((c / n) * math.log2(c / n) for c in counts.values()))


def unique_ratio(answers: Sequence[str | None]) -> float:
    """Distinct valid answers divided by the number of answers (invalid ones count as not unique)."""
    if not answers:
        raise ValueError("unique_ratio needs at least one answer")
    return len({a for a in answers if a is not None}) / len(answers)
