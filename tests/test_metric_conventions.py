"""The papers' metric conventions, each under its own name beside divtune's: JSD divergence and distance, Texygen's
Self-BLEU beside sacrebleu's, open-set Unique@N on the paper's plain prompts with exact strings beside the
normalised count, and MATH "Verify" beside exact match."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from divtune.answers.metrics import (answer_distribution, js_distance_to_uniform, jsd_to_uniform, self_bleu,
                                     self_bleu_texygen)

BENCH_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"


def test_jsd_divergence_and_distance():
    # a full collapse on one of 8 items: the review's 0.717 bits; the distance is its square root
    collapse = answer_distribution(["a"] * 10, list("abcdefgh"))
    assert jsd_to_uniform(collapse) == pytest.approx(0.7169, abs=1e-4)
    assert js_distance_to_uniform(collapse) == pytest.approx(math.sqrt(jsd_to_uniform(collapse)))
    uniform = answer_distribution(list("abcdefgh"), list("abcdefgh"))
    assert jsd_to_uniform(uniform) == pytest.approx(0.0, abs=1e-12) and js_distance_to_uniform(uniform) < 1e-6


def test_self_bleu_texygen_by_hand():
    # 4-word texts sharing one word: unigram precision 1/4; no bigram or trigram matches, so method1 puts 0.1
    # over their counts (3, 2); equal lengths, no brevity penalty: BLEU-3 = (1/4 * 0.1/3 * 0.1/2) ** (1/3)
    expected = (1 / 4 * 0.1 / 3 * 0.1 / 2) ** (1 / 3)
    value, settings = self_bleu_texygen(["a b c d", "a e f g"])
    assert value == pytest.approx(expected)
    assert settings["gram"] == 3 and settings["smoothing"] == "method1" and settings["sample_size"] == 500
    assert "nltk.word_tokenize" in str(settings["tokenizer"])
    assert self_bleu_texygen(["the cat sat on the mat", "the cat sat on the mat"])[0] == pytest.approx(1.0)
    assert self_bleu_texygen(["a b c d", "e f g h"])[0] == 0.0  # nltk: no unigram in common is 0, unsmoothed
    # sacrebleu's convention (4-gram, exponential smoothing, 0-100) is a different number for the same texts
    texts = ["the cat sat on the mat", "the cat sat on a mat", "a dog ran in the park"]
    assert self_bleu(texts) / 100 != pytest.approx(self_bleu_texygen(texts)[0], abs=1e-3)
    # only the first sample_size texts count (Texygen's 500)
    assert self_bleu_texygen(["x y z", "x y z", "p q r s"], sample_size=2)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        self_bleu_texygen(["one"])


def test_creative_reports_both_self_bleu_conventions():
    from divtune.evaluate.creative import text_diversity

    texts = ["the cat sat on the mat", "the cat sat on a mat", "a dog ran in the park", "  "]
    row = text_diversity(texts, None)
    kept = [t for t in texts if t.strip()]
    assert row["one_minus_self_bleu"] == pytest.approx(1 - self_bleu(kept) / 100)
    assert row["one_minus_self_bleu_texygen"] == pytest.approx(1 - self_bleu_texygen(kept)[0])
    assert row["self_bleu_texygen_settings"]["gram"] == 3


class _Scripted:
    name = "scripted"

    def __init__(self, outs):
        self.outs, self.prompts = outs, []

    def describe(self):
        return {"backend": "scripted", "model": "scripted"}

    def generate(self, prompts, params):
        self.prompts += [p[-1]["content"] for p in prompts]
        return [list(self.outs)[: params.n] for _ in prompts]


def test_open_set_paper_prompts_and_exact_counts():
    from divtune.data.open_set import ANSWER_FORMAT
    from divtune.evaluate.open_set import evaluate_open_set

    outs = ["Paris", "paris.", " Paris ", "<answer>Paris</answer>", "Rome", ""]
    gen = _Scripted(outs)
    res = evaluate_open_set(gen, samples=6, paper_prompts=True)
    assert gen.prompts and all(ANSWER_FORMAT not in p for p in gen.prompts)
    assert any(p.startswith("Name one city") for p in gen.prompts)
    assert res["paper_prompts"] is True
    # exact after stripping: Paris, paris., <answer>Paris</answer>, Rome; normalised: paris, rome
    assert res["unique_at_n_exact"] == 4 and res["unique_at_n"] == 2
    assert set(res["unique_at_n_exact_by_category"].values()) == {4}
    gen = _Scripted(outs)
    evaluate_open_set(gen, samples=6)  # the default keeps divtune's format line
    assert all(p.endswith(ANSWER_FORMAT) for p in gen.prompts)


def test_math_verify_on_logged_records():
    from divtune.evaluate.benchmarks import math_verify

    records = [  # lm-eval's logged sample records (doc, filtered_resps)
        {"doc": {"solution": "So $x = \\boxed{\\frac{1}{2}}$."}, "filtered_resps": ["The answer is 0.5"]},
        {"doc": {"solution": "\\boxed{x^2}"}, "filtered_resps": ["we get \\boxed{x \\cdot x}"]},
        {"doc": {"solution": "\\boxed{3}"}, "filtered_resps": ["\\boxed{4}"]},
    ]
    assert math_verify(records) == pytest.approx(2 / 3)
    assert math_verify([]) is None


def test_math_verify_through_lm_eval_on_the_toy(toy_model_dir):
    from divtune.evaluate import benchmarks as bm

    res = bm.run_benchmarks(model=str(toy_model_dir), data=str(BENCH_FIXTURES), tasks="math", runs=1,
                            max_gen_toks=4, sample_sizes={"math": 1}, limit=2, seed=7, batch_size=8)
    m = res["results"]["math"]["metrics"]
    assert "exact_match,none" in m and "verify,none" in m
    assert 0.0 <= res["metrics"]["bench.math_verify"] <= 1.0
    assert res["metrics"]["bench.math_verify"] == m["verify,none"]["mean"]
    assert res["metrics"]["bench.math"] == m["exact_match,none"]["mean"]
    assert all("verify,none" in sub for sub in res["results"]["math"]["subtasks"].values())
    assert any(line.split()[:2] == ["math", "verify,none"] for line in bm.format_table(res).splitlines())
