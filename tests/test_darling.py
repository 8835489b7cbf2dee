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
    assert correct_only(group, meta) == pytest.approx([2 / 3, 2 / 3, 1.0, 0.0])


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

    from divtune.rewards.partition import ClassifierPartitioner, EmbeddingPartitioner, default_embedding_model

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
