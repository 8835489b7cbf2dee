"""Pure diversity metrics (definitions follow the GAPO paper, section 6, and NoveltyBench).

Every function takes plain Python data and returns floats; no I/O, no models.  Where the papers leave a
convention open, or cite another implementation, both conventions are here under their own names
(:func:`jsd_to_uniform` / :func:`js_distance_to_uniform`, :func:`self_bleu` / :func:`self_bleu_texygen`).
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


def js_distance_to_uniform(distribution: Sequence[float]) -> float:
    """The Jensen-Shannon *distance* (base 2, in [0, 1]) to the same target: ``sqrt`` of :func:`jsd_to_uniform`.

    The GAPO paper says "Jensen-Shannon divergence" without a log base; :func:`jsd_to_uniform` (the divergence
    in bits) is the convention the gate and the headline ``jsd_mean`` use, this distance is reported beside it.
    """
    return float(math.sqrt(max(jsd_to_uniform(distribution), 0.0)))


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


#: Texygen's Self-BLEU settings (Zhu et al. 2018, ``geek-ai/Texygen`` ``utils/metrics/SelfBleu.py``): word
#: 3-grams with equal weights, nltk ``sentence_bleu`` with ``SmoothingFunction().method1``, the first 500 texts.
TEXYGEN_GRAM = 3
TEXYGEN_SAMPLE_SIZE = 500


def texygen_tokenize(text: str) -> tuple[list[str], str]:
    """nltk's ``word_tokenize`` as Texygen calls it, and which tokeniser ran.

    ``word_tokenize`` first splits sentences with the Punkt model (nltk data ``punkt_tab``, not a Python
    package, so often absent offline); without it the same word tokeniser runs on the whole text
    (``preserve_line=True``), which differs only where a sentence-final period is not the text's last one.
    """
    from nltk.tokenize import word_tokenize

    try:
        return word_tokenize(text), "nltk.word_tokenize"
    except LookupError:  # no punkt data
        return word_tokenize(text, preserve_line=True), "nltk.word_tokenize(preserve_line=True)"


def self_bleu_texygen(texts: Sequence[str], *, gram: int = TEXYGEN_GRAM,
                      sample_size: int = TEXYGEN_SAMPLE_SIZE) -> tuple[float, dict[str, object]]:
    """Self-BLEU in Texygen's convention, on a 0-1 scale, and the settings that produced it.

    Texygen (the implementation GAPO cites for 1 - Self-BLEU): each of the first ``sample_size`` texts,
    tokenised with nltk ``word_tokenize``, is the hypothesis against all the *other* texts as references;
    nltk ``sentence_bleu`` with uniform ``1/gram`` weights over 1..``gram``-grams and
    ``SmoothingFunction().method1``; the mean over hypotheses.  Compare :func:`self_bleu` (sacrebleu,
    4-grams, 13a, exponential smoothing, 0-100), which gives systematically different values.  Checked against
    ``geek-ai/Texygen`` ``utils/metrics/SelfBleu.py`` (``get_bleu_fast``); Texygen reads one text per *line* of a
    file, here one text is one completion (its inner newlines stay in it).
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    texts = list(texts)[:sample_size]
    if len(texts) < 2:
        raise ValueError("self_bleu_texygen needs at least two texts")
    if gram < 1:
        raise ValueError(f"gram must be >= 1, got {gram}")
    tokenised = [texygen_tokenize(t) for t in texts]
    refs = [toks for toks, _ in tokenised]
    weights = tuple(1.0 / gram for _ in range(gram))
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(refs[:i] + refs[i + 1 :], hyp, weights, smoothing_function=smooth)
              for i, hyp in enumerate(refs)]
    tokenizers = sorted({name for _, name in tokenised})
    return float(np.mean(scores)), {"gram": gram, "smoothing": "method1", "sample_size": sample_size,
                                    "tokenizer": tokenizers[0] if len(tokenizers) == 1 else tokenizers}


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


# --------------------------------------------------------------------------------------
# NoveltyBench (Zhang et al. 2025, arXiv 2504.05228): distinct_k and utility_k
# --------------------------------------------------------------------------------------

#: NoveltyBench's patience (``src/score.py --patience``, default 0.8).
NOVELTY_PATIENCE = 0.8


def novel_mask(classes: Sequence[int]) -> list[bool]:
    """For each generation, in order: does it open an equivalence class no earlier generation is in?"""
    seen: set[int] = set()
    out = []
    for c in classes:
        out.append(c not in seen)
        seen.add(c)
    return out


def distinct_k(classes: Sequence[int]) -> int:
    """NoveltyBench's distinct_k: the number of equivalence classes among the k generations."""
    if not classes:
        raise ValueError("distinct_k needs at least one generation")
    return len(set(classes))


def utility_k(classes: Sequence[int], quality: Sequence[float], patience: float = NOVELTY_PATIENCE) -> float:
    """NoveltyBench's utility_k: the patience-weighted mean of per-generation scores, duplicates scoring 0.

    ``utility_k = (1 - p) / (1 - p^k) * sum_{i=1..k} p^(i-1) * 1[generation i opens a new class] * q_i``,
    i.e. ``numpy.average(scores, weights=p ** arange(k))`` with ``scores[i] = q_i`` for a generation that
    opens a class and 0 for one equivalent to an earlier generation -- exactly the reference's
    ``novelty-bench/novelty-bench`` ``src/score.py`` (``score_partition_rm`` and ``process_instances``).
    ``quality[i]`` is generation i's quality (only the class openers' values are used).  The value is in the
    unit of the quality: NoveltyBench maps its reward model's raw score to an integer 1..10 first, so its
    utility lies in [0, 10]; with a 0/1 task quality it lies in [0, 1].  ``patience`` in (0, 1]; 1 is the
    plain mean, which is what DARLING's release computes (its ``evals/novelty-bench/src/score.py``: the class
    openers' scores summed and divided by k).
    """
    k = len(classes)
    if k == 0:
        raise ValueError("utility_k needs at least one generation")
    if len(quality) != k:
        raise ValueError(f"utility_k: {len(quality)} quality values for {k} generations")
    if not 0.0 < patience <= 1.0:
        raise ValueError(f"patience must be in (0, 1], got {patience}")
    scores = [float(q) if new else 0.0 for q, new in zip(quality, novel_mask(classes), strict=True)]
    return float(np.average(scores, weights=patience ** np.arange(k)))
