"""Open-set and creative-writing suites: pure metrics by hand, the suites on fakes and on the toy
through the CLI (JSON, markdown, PNGs, MLflow artifacts); their bad-input rows are in tests/test_bad_input_table.py.

The toy model only answers list prompts, so its open-set/creative figures are degenerate: the
end-to-end tests check plumbing and keys, never diversity values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from divtune.data.creative import CREATIVE_PROMPTS, CreativePrompt
from divtune.data.open_set import (CATEGORIES, OpenSetPrompt, answer_text, default_prompts, load_prompts_file,
                                   normalize_answer)
from divtune.errors import DataError
from divtune.answers.metrics import (cumulative_unique, distinct_ngram_ratio, mean_pairwise_cosine_distance,
                                      self_bleu, unique_at_n)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------
# pure metrics and normalisation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,norm", [
    ("<answer>The Great Gatsby.</answer>", "great gatsby"),
    ("great  gatsby", "great gatsby"),
    ("**São Paulo**", "são paulo"),
    ("Answer: Paris!\nParis is the capital of France.", "paris"),
    ("\n\n  Tokyo\nmore text", "tokyo"),
    ("<ANSWER> New York City </ANSWER> because", "new york city"),
    ("<answer>Rio de Janeiro", "rio de janeiro"),  # closing tag cut off by the token limit
    ("<answer>ＰＡＲＩＳ</answer>", "paris"),  # full-width letters: NFKC
    ("<answer>Don't Look Up</answer>", "dont look up"),
    ("<answer>an apple</answer>", "apple"),
    ("<answer></answer>", ""),
    ("   ", ""),
    ("...", ""),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_answer_text_takes_the_first_span():
    assert answer_text("x <answer>Lima</answer> y <answer>Oslo</answer>").strip() == "Lima"


def test_unique_at_n_with_normalisation():
    raw = ["<answer>Paris</answer>", "paris.", "The Paris", "<answer>Rome</answer>", "", "<answer> </answer>", "ROME!"]
    answers = [normalize_answer(a) for a in raw]
    assert answers == ["paris", "paris", "paris", "rome", "", "", "rome"]
    assert unique_at_n(answers) == 2
    assert unique_at_n([None, "", None]) == 0
    assert unique_at_n(["a", "b", "c"]) == 3


def test_cumulative_unique_curve():
    assert cumulative_unique(["a", "a", "b", "", None, "c", "b"]) == [1, 1, 2, 2, 2, 3, 3]
    assert cumulative_unique([]) == []
    curve = cumulative_unique(["x", "y", "x"])
    assert curve[-1] == unique_at_n(["x", "y", "x"])


def test_mean_pairwise_cosine_distance_by_hand():
    # pairs: (e1,e2) orthogonal -> 1; (e1,e1+e2) and (e2,e1+e2) -> 1 - 1/sqrt(2)
    d = mean_pairwise_cosine_distance([[1, 0], [0, 1], [1, 1]])
    assert d == pytest.approx((1 + 2 * (1 - 1 / math.sqrt(2))) / 3)
    assert mean_pairwise_cosine_distance([[3, 0], [5, 0]]) == pytest.approx(0.0)  # scale does not matter
    assert mean_pairwise_cosine_distance([[1, 0], [-1, 0]]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        mean_pairwise_cosine_distance([[1, 0]])
    with pytest.raises(ValueError):
        mean_pairwise_cosine_distance([[1, 0], [0, 0]])


def test_self_bleu_identical_and_disjoint():
    same = ["the cat sat on the mat today"] * 4
    assert 1 - self_bleu(same) / 100 == pytest.approx(0.0, abs=1e-9)
    disjoint = ["alpha beta gamma delta epsilon", "one two three four five", "red green blue yellow black"]
    assert 1 - self_bleu(disjoint) / 100 == pytest.approx(1.0, abs=0.02)
    partial = ["the cat sat on the mat", "the cat sat on a mat", "dogs run fast in parks"]
    assert 0 < self_bleu(partial) < 100
    with pytest.raises(ValueError):
        self_bleu(["only one"])


def test_self_bleu_is_sacrebleu_sentence_bleu():
    from sacrebleu.metrics import BLEU

    texts = ["a b c d e", "a b c d f", "x y z w v"]
    bleu = BLEU(effective_order=True)
    want = np.mean([bleu.sentence_score(t, texts[:i] + texts[i + 1:]).score for i, t in enumerate(texts)])
    assert self_bleu(texts) == pytest.approx(want)


def test_distinct_ngram_ratio_and_degeneracy():
    from divtune.evaluate.creative import is_non_degenerate

    assert distinct_ngram_ratio("a b c d") == 1.0
    assert distinct_ngram_ratio("a b a b a b a b", 3) == pytest.approx(2 / 6)
    assert distinct_ngram_ratio("short", 3) == 1.0
    assert is_non_degenerate("Autumn leaves whisper, chill winds carry their secrets.")
    assert not is_non_degenerate("")
    assert not is_non_degenerate("the end " * 20)  # a loop
    assert not is_non_degenerate("}}]) ;;@@ ## %%% 0x1f 42 [[( ))")  # token soup


# --------------------------------------------------------------------------------------
# prompt data
# --------------------------------------------------------------------------------------


def test_open_set_prompts_and_creative_prompts():
    ps = default_prompts()
    assert len(ps) == 10 == len(CATEGORIES) and len({p.category for p in ps}) == 10
    assert ps[0].prompt.startswith("Name one city anywhere in the world.")  # the paper's wording
    assert all("<answer>" in p.prompt for p in ps)
    assert all("<answer>" not in p.prompt for p in default_prompts(answer_format=False))
    assert [p.prompt for p in CREATIVE_PROMPTS] == [
        "Write a story with no more than 100 words.",
        "Write a poem with no more than 100 words.",
        "Write a haiku in English.",
        "Craft a one-sentence mystery opening.",
        "Compose a two-line dialogue between two characters.",
        "Pitch an idea for a new fruit in one sentence.",
        "Tell a joke.",
        "Write only the chorus for a pop song.",
    ]


def test_prompts_file_formats(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(["Name a river.", "Name a mountain."]))
    assert [x.category for x in load_prompts_file(p)] == ["prompt-00", "prompt-01"]
    p.write_text(json.dumps([{"category": "river", "prompt": "Name a river."}, {"prompt": "Name a tree."}]))
    assert load_prompts_file(p) == [OpenSetPrompt("river", "Name a river."), OpenSetPrompt("prompt-01", "Name a tree.")]


@pytest.mark.parametrize("content,msg", [
    (None, "not found"),
    ("[1, 2", "not valid JSON"),
    ("[]", "non-empty JSON list"),
    ('{"a": 1}', "non-empty JSON list"),
    ("[3]", "entry 0 must be a string or an object"),
    ('[""]', "entry 0 has an empty prompt"),
    ('[{"category": "x"}]', "entry 0 needs a string field 'prompt'"),
    ('[{"prompt": "a", "extra": 1}]', "unknown field 'extra'"),
    ('[{"category": "x", "prompt": "a"}, {"category": "x", "prompt": "b"}]', "repeats category 'x'"),
])
def test_prompts_file_errors(tmp_path, content, msg):
    p = tmp_path / "bad.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(DataError, match=msg) as exc:
        load_prompts_file(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


# --------------------------------------------------------------------------------------
# the suites on fakes (no model)
# --------------------------------------------------------------------------------------


class FakeGenerator:
    name = "fake"

    def __init__(self, table):
        self.table = table  # prompt text (last user message) -> completions, or a callable(params)
        self.calls = []

    def describe(self):
        return {"backend": "fake", "model": "fake-model"}

    def generate(self, prompts, params):
        self.calls.append(params)
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            comp = self.table[text]
            comp = comp(params) if callable(comp) else comp
            out.append([comp[i % len(comp)] for i in range(params.n)])
        return out


class FakeEmbedder:
    """Bag of letters: texts sharing letters point the same way."""

    def describe(self):
        return {"model": "letters"}

    def encode(self, texts):
        e = np.zeros((len(texts), 26)) + 1e-3
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    e[i, ord(ch) - 97] += 1
        return e


def test_evaluate_open_set_counts_on_a_fake():
    from divtune.evaluate.open_set import evaluate_open_set

    prompts = [OpenSetPrompt("city", "Name a city."), OpenSetPrompt("color", "Name a color.")]
    gen = FakeGenerator({
        "Name a city.": ["<answer>Paris</answer>", "paris", "<answer>Rome</answer>", "", "Lima."],
        "Name a color.": ["<answer>Red</answer>"],
    })
    res = evaluate_open_set(gen, prompts, samples=5, temperature=0.9, seed=7)
    assert res["unique_at_n_by_category"] == {"city": 3, "color": 1}
    assert res["unique_at_n"] == pytest.approx(2.0)
    assert res["invalid_rate"] == pytest.approx((1 / 5 + 0) / 2)
    assert res["answer_tag_rate"] == pytest.approx((2 / 5 + 1) / 2)  # followed the <answer> format
    assert res["cumulative_unique"] == {"city": [1, 1, 2, 2, 3], "color": [1, 1, 1, 1, 1]}
    city = res["per_category"][0]
    assert city["top_answers"][0] == ["paris", 2] and city["answer_counts"] == {"paris": 2, "rome": 1, "lima": 1}
    assert res["sampling"]["temperature"] == 0.9 and res["sampling"]["n"] == 5 and res["sampling"]["seed"] == 7
    assert res["generator"] == {"backend": "fake", "model": "fake-model"}


def test_evaluate_creative_on_a_fake():
    from divtune.evaluate.creative import evaluate_creative

    prompts = [CreativePrompt("same", "Say hi."), CreativePrompt("varied", "Say anything."),
               CreativePrompt("empty", "Say nothing.")]
    gen = FakeGenerator({
        "Say hi.": ["hello there friend"],
        "Say anything.": ["alpha beta gamma", "zzz yyy xxx", "quick brown fox", "lorem ipsum dolor"],
        "Say nothing.": ["", "  "],
    })
    res = evaluate_creative(gen, prompts, samples=4, embedder=FakeEmbedder(), seed=3)
    same, varied, empty = res["per_prompt"]
    assert same["pairwise_cosine_distance"] == pytest.approx(0.0, abs=1e-9)
    assert same["one_minus_self_bleu"] == pytest.approx(0.0, abs=1e-9)
    assert varied["one_minus_self_bleu"] == pytest.approx(1.0, abs=0.02)
    assert varied["pairwise_cosine_distance"] > 0.5
    assert empty["pairwise_cosine_distance"] is None and empty["empty_rate"] == 1.0
    assert res["pairwise_cosine_distance"] == pytest.approx(np.mean([0.0, varied["pairwise_cosine_distance"]]))
    assert res["empty_rate"] == pytest.approx(1 / 3)
    ts = res["tsne"]
    assert len(ts["x"]) == len(ts["y"]) == len(ts["prompt"]) == 8 and set(ts["prompt"]) == {0, 1}
    assert ts["perplexity"] == pytest.approx(7.0)  # clamped to n - 1
    assert len(same["tsne"]["x"]) == 4 and same["tsne"]["perplexity"] == 3 and "tsne" not in empty
    assert res["embedder"] == {"model": "letters"}


def test_tsne_perplexity_clamp():
    from divtune.evaluate.creative import tsne_coordinates

    rng = np.random.default_rng(0)
    assert tsne_coordinates(rng.normal(size=(1, 4))) is None
    small = tsne_coordinates(rng.normal(size=(3, 4)))
    assert small["perplexity"] == 2 and len(small["x"]) == 3
    assert tsne_coordinates(rng.normal(size=(50, 4)))["perplexity"] == 30
    collapsed = tsne_coordinates(np.ones((5, 4)))  # full mode collapse: no crash, one point
    assert collapsed["x"] == [0.0] * 5 and collapsed["y"] == [0.0] * 5
    dupes = tsne_coordinates(np.vstack([np.ones((6, 4)), rng.normal(size=(3, 4))]))
    assert len(dupes["x"]) == 9 and all(map(math.isfinite, dupes["x"]))


def test_coherence_curve_on_a_fake_reuses_known_samples():
    from divtune.evaluate.creative import creativity_coherence_curve, evaluate_creative

    def by_temperature(params):
        if params.temperature < 1:
            return ["the same calm sentence here"]
        return ["a wild new line appears", "qqq zzz %%% ### @@@", "xylophone jazz quietly vexed"]

    prompts = [CreativePrompt("p", "Write.")]
    gen = FakeGenerator({"Write.": by_temperature})
    base = evaluate_creative(gen, prompts, samples=3, temperature=1.0, embedder=FakeEmbedder(), tsne=False)
    n_calls = len(gen.calls)
    curve = creativity_coherence_curve(gen, [0.5, 1.0], prompts, samples=3, embedder=FakeEmbedder(),
                                       known={1.0: base})
    assert len(gen.calls) == n_calls + 1  # T=1.0 reused
    assert curve["coherence_metric"] == "non_degenerate_rate" and curve["scorer"] is None
    low, high = curve["points"]
    assert low["pairwise_cosine_distance"] == pytest.approx(0.0, abs=1e-9) and low["coherence"] == 1.0
    assert high["pairwise_cosine_distance"] > 0.3 and high["coherence"] == pytest.approx(2 / 3)
    fixed = creativity_coherence_curve(gen, [0.5], prompts, samples=3, embedder=FakeEmbedder(),
                                       coherence_fn=lambda t: 0.42)
    assert fixed["coherence_metric"] == "coherence_fn" and fixed["points"][0]["coherence"] == 0.42
    with pytest.raises(DataError):
        creativity_coherence_curve(gen, [0.0], prompts, embedder=FakeEmbedder())


def test_logprob_scorer_on_the_toy(toy_model_dir):
    import torch

    from divtune.evaluate.creative import LogprobScorer
    from divtune.evaluate.generation import HFGenerator

    gen = HFGenerator(toy_model_dir)
    scorer = LogprobScorer.from_generator(gen)
    prompt = "Please select one from these options: [red, blue]. Format your response as follows: <answer>selected_item</answer>."
    s = scorer.score(prompt, ["<answer>red</answer>", "zq zq zq zq", ""])
    assert s[0] <= 0 and math.isfinite(s[1]) and math.isnan(s[2])
    assert s[0] > s[1]  # the toy copies list items: the answer is far likelier than noise
    # by hand: the same mean token log-likelihood from one unbatched forward pass
    tok = gen.tokenizer
    p_ids = tok(gen.render(prompt), add_special_tokens=False)["input_ids"]
    c_ids = tok("<answer>red</answer>", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0]
    lp = torch.log_softmax(logits.float(), -1)
    want = float(np.mean([lp[len(p_ids) - 1 + k, c].item() for k, c in enumerate(c_ids)]))
    assert s[0] == pytest.approx(want, abs=1e-4)


# --------------------------------------------------------------------------------------
# plots and reports
# --------------------------------------------------------------------------------------


def _fake_results():
    from divtune.evaluate.creative import creativity_coherence_curve, evaluate_creative
    from divtune.evaluate.open_set import evaluate_open_set

    gen = FakeGenerator({"Name a city.": ["Paris", "Rome", "Paris", "Oslo"],
                         "Write.": ["a b c d", "e f g h", "a b x y"]})
    os_res = evaluate_open_set(gen, [OpenSetPrompt("city", "Name a city.")], samples=4)
    cr = evaluate_creative(gen, [CreativePrompt("w", "Write.")], samples=3, embedder=FakeEmbedder())
    cr["coherence_curve"] = creativity_coherence_curve(gen, [0.7, 1.0], [CreativePrompt("w", "Write.")], samples=3,
                                                       embedder=FakeEmbedder())
    return os_res, cr


def test_figures_markdown_and_outputs(tmp_path):
    from divtune.evaluate import plots, report

    os_res, cr = _fake_results()
    for suite, res, n_png in (("open-set", os_res, 1), ("creative", cr, 3)):
        pngs = plots.suite_figures(suite, res, tmp_path / "figs")
        assert len(pngs) == n_png and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
        md = report.markdown_summary(suite, res)
        assert md.startswith(f"# divtune evaluate {suite}") and "|---|" in md
        files = report.write_outputs(tmp_path / "out", suite, res, pngs, md)
        assert {f.name for f in files} >= {f"{suite}.json", f"{suite}.md"} | {p.name for p in pngs}
        assert json.loads((tmp_path / "out" / f"{suite}.json").read_text())["suite"] == suite
    assert "Unique@4" in report.markdown_summary("open-set", os_res)
    assert "Creativity vs coherence" in report.markdown_summary("creative", cr)
    m = report.headline_metrics("creative", cr)
    assert {"pairwise_cosine_distance", "one_minus_self_bleu", "curve/t_0.70/coherence"} <= set(m)


def test_log_evaluation_new_run_and_active_run(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from divtune.evaluate import plots, report
    from divtune.registry import tracking

    os_res, _ = _fake_results()
    pngs = plots.suite_figures("open-set", os_res, tmp_path)
    md = report.markdown_summary("open-set", os_res)
    rid = report.log_evaluation("open-set", os_res, pngs, md)
    c = MlflowClient()
    run = c.get_run(rid)
    assert c.get_experiment(run.info.experiment_id).name == "divtune-eval"
    assert run.data.metrics["unique_at_n"] == pytest.approx(3.0) and run.data.params["suite"] == "open-set"
    assert run.data.tags["divtune.eval.suite"] == "open-set" and run.info.status == "FINISHED"
    names = {a.path for a in c.list_artifacts(rid, "evaluation")}
    assert names == {"evaluation/open-set.json", "evaluation/open-set.md", "evaluation/open-set_cumulative_unique.png"}
    # inside an active run: logged there, settings as tags
    tracking.setup()
    with mlflow.start_run(experiment_id=tracking.experiment_id("some-stage")) as outer:
        got = report.log_evaluation("open-set", os_res, pngs, md)
    assert got == outer.info.run_id
    r2 = c.get_run(got)
    assert r2.data.metrics["unique_at_n/city"] == 3 and r2.data.tags["divtune.eval.open-set.temperature"] == "1.0"


# --------------------------------------------------------------------------------------
# end to end on the toy, through the CLI
# --------------------------------------------------------------------------------------


def _mlflow_artifacts(run_id: str) -> set[str]:
    from mlflow.tracking import MlflowClient

    from divtune.registry import tracking

    tracking.setup()
    return {a.path for a in MlflowClient().list_artifacts(run_id, "evaluation")}


@pytest.mark.slow
def test_cli_open_set_on_toy(toy_model_dir, tmp_path, cli):
    out, d = tmp_path / "os.json", tmp_path / "os"
    r = cli("evaluate", "open-set", "--model", str(toy_model_dir), "--samples", "4", "--max-new-tokens", "16",
            "-o", str(out), "--out-dir", str(d))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert {"unique_at_n", "unique_at_n_by_category", "invalid_rate", "cumulative_unique", "per_category",
            "sampling", "generator", "mlflow"} <= set(res)
    assert set(res["unique_at_n_by_category"]) == set(CATEGORIES)
    assert all(len(v) == 4 for v in res["cumulative_unique"].values())
    assert res["sampling"] == {"n": 4, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                               "repetition_penalty": 1.0, "max_new_tokens": 16, "seed": 1234}
    assert res["generator"]["model"] == str(toy_model_dir)
    assert (d / "open-set.md").read_text().count("\n| ") == 11  # header + 10 categories
    assert (d / "open-set_cumulative_unique.png").read_bytes()[:8] == PNG_MAGIC
    assert _mlflow_artifacts(res["mlflow"]["run_id"]) == {
        "evaluation/open-set.json", "evaluation/open-set.md", "evaluation/open-set_cumulative_unique.png"}
    assert "unique_at_n" in r.stderr.splitlines()[-1]


@pytest.mark.slow
def test_cli_creative_on_toy_with_curve(toy_model_dir, tmp_path, cli):
    from mlflow.tracking import MlflowClient

    out, d = tmp_path / "cr.json", tmp_path / "cr"
    r = cli("evaluate", "creative", "--model", str(toy_model_dir), "--samples", "3", "--max-new-tokens", "12",
            "--temperatures", "0.7,1.0", "-o", str(out), "--out-dir", str(d))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert {"pairwise_cosine_distance", "one_minus_self_bleu", "empty_rate", "per_prompt", "tsne", "embedder",
            "sampling", "generator", "coherence_curve", "mlflow"} <= set(res)
    assert [p["id"] for p in res["per_prompt"]] == [p.id for p in CREATIVE_PROMPTS]
    assert all(len(p["completions"]) == 3 for p in res["per_prompt"])
    assert res["embedder"]["model"] == "all-MiniLM-L6-v2"
    curve = res["coherence_curve"]
    assert curve["temperatures"] == [0.7, 1.0] and curve["coherence_metric"] == "mean_token_logprob"
    assert all(p["mean_token_logprob"] is None or p["mean_token_logprob"] <= 0 for p in curve["points"])
    pngs = {"creative_tsne.png", "creative_tsne_haiku.png", "creative_coherence_curve.png"}
    assert all((d / n).read_bytes()[:8] == PNG_MAGIC for n in pngs)
    assert _mlflow_artifacts(res["mlflow"]["run_id"]) == {f"evaluation/{n}" for n in pngs | {"creative.json", "creative.md"}}
    metrics = MlflowClient().get_run(res["mlflow"]["run_id"]).data.metrics
    assert "curve/t_0.70/coherence" in metrics


def test_cli_no_mlflow_writes_files_only(toy_model_dir, tmp_path, cli):
    d = tmp_path / "o"
    r = cli("evaluate", "open-set", "--model", str(toy_model_dir), "--samples", "1", "--max-new-tokens", "4",
            "--no-mlflow", "--out-dir", str(d), "--prompts", str(_write(tmp_path / "p.json", ["Name a city."])))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert "mlflow" not in res and res["num_categories"] == 1 and "MLflow run" not in r.stderr
    from divtune.outputs import MARKER  # the directory says divtune wrote it (a re-run may replace it)

    assert {p.name for p in d.iterdir()} == {"open-set.json", "open-set.md", "open-set_cumulative_unique.png", MARKER}


def _write(p: Path, data) -> Path:
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p
