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

    Answers must already be canonical items (see :func:`divtune.answers.extract.match_item`).
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


# --------------------------------------------------------------------------------------
# open-set and creative diversity (GAPO sections 6.2, 6.3)
# --------------------------------------------------------------------------------------


def unique_at_n(answers: Sequence[str | None]) -> int:
    """Unique@N: the number of distinct valid answers among the N given.

    Answers must already be normalised (:func:`divtune.data.open_set.normalize_answer`); ``None``
    and ``""`` are invalid and not counted.
    """
    return len({a for a in answers if a})


def cumulative_unique(answers: Sequence[str | None]) -> list[int]:
    """``out[k]`` = Unique@(k+1) of the first k+1 answers (the curves of paper Figure 5a,b)."""
    seen: set[str] = set()
    out = []
    for a in answers:
        if a:
            seen.add(a)
        out.append(len(seen))
    return out


def mean_pairwise_cosine_distance(embeddings: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean of ``1 - cos(e_i, e_j)`` over all pairs i < j (paper Table 1, "embedding distance").

    Rows are normalised here, so raw or unit embeddings give the same value.  Needs two rows and
    no zero row.
    """
    e = np.asarray(embeddings, dtype=float)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError("mean_pairwise_cosine_distance needs at least two embedding rows")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("mean_pairwise_cosine_distance: an embedding is the zero vector")
    u = e / norms
    sim = u @ u.T
    n = e.shape[0]
    iu = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - sim[iu]))


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU (Zhu et al. 2018) on sacrebleu's 0-100 scale.

    Each text is the hypothesis and all the *other* texts are its references; sentence BLEU
    (sacrebleu defaults: 4-grams, 13a tokenisation, exponential smoothing, effective order), averaged
    over the texts.  100 means every text is repeated elsewhere; lexical diversity is
    ``1 - self_bleu / 100``.
    """
    from sacrebleu.metrics import BLEU

    texts = list(texts)
    if len(texts) < 2:
        raise ValueError("self_bleu needs at least two texts")
    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)]
    return float(np.mean(scores))


def distinct_ngram_ratio(text: str, n: int = 3) -> float:
    """Distinct word n-grams / all word n-grams of one text (1.0 when it has fewer than n words)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021; code_eval's estimator)."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
