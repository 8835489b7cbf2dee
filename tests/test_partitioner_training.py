"""DARLING's pair classifier: generated same/different pairs, the pairs file schema, and a short real
fine-tune whose result works as the classifier partitioner."""

from __future__ import annotations

import json
import re

import pytest

from divtune.data.pairs import PHRASINGS, Pair, read_pairs, synthesize_pairs, write_pairs
from divtune.errors import DataError, DivtuneError


def test_pairs_are_seeded_balanced_and_labelled_by_answer():
    a = synthesize_pairs(400, seed=1)
    assert a == synthesize_pairs(400, seed=1) and a != synthesize_pairs(400, seed=2)
    same = sum(p.label for p in a)
    assert 150 < same < 250
    for p in a[:50]:
        # recover the answers: the wording never decides the label
        answers = []
        for text in (p.text1, p.text2):
            for t in PHRASINGS:
                pre, _, post = t.partition("{")
                post = post.split("}", 1)[1]
                if text.startswith(pre) and text.endswith(post):
                    answers.append(text[len(pre): len(text) - len(post)].casefold())
                    break
        assert (answers[0] == answers[1]) == bool(p.label), p
    same_wording = [p for p in a if p.text1.split()[:2] == p.text2.split()[:2]]
    labels = [p.label for p in same_wording]
    assert 0 < sum(labels) < len(labels)  # shared wording occurs under both labels


def test_pairs_file_round_trip_and_schema_errors(tmp_path):
    pairs = synthesize_pairs(10, 0)
    p = write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert read_pairs(p) == pairs
    cases = [
        ("not json\n", "line 1: not valid JSON"),
        ('{"text1": "a", "text2": "b"}\n', "line 1: missing key(s) label"),
        ('{"text1": "a", "text2": "b", "label": 2}\n', "line 1: label must be 0"),
        ('{"text1": "a", "text2": "b", "label": true}\n', "line 1: label must be 0"),
        ('{"text1": "a", "text2": "b", "label": 1}\n{"text1": "", "text2": "b", "label": 0}\n', "line 2: text1"),
        ('{"text1": "a", "text2": 3, "label": 0}\n', "line 1: text2"),
        ('{"text1": "a", "text2": "b", "label": 0, "extra": 1}\n', "line 1: unknown key 'extra'"),
        ("[1, 2]\n", "line 1: expected an object"),
        ("\n\n", "contains no pairs"),
    ]
    bad = tmp_path / "bad.jsonl"
    for text, msg in cases:
        bad.write_text(text)
        with pytest.raises(DataError, match=re.escape(msg)) as info:
            read_pairs(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="not found"):
        read_pairs(tmp_path / "missing.jsonl")


def test_training_refuses_bad_input_before_training(tmp_path):
    from divtune.train.partitioner import PartitionerTrainConfig, train_partitioner

    one_label = write_pairs([Pair(f"answer {i} here", f"answer {i} there", 1) for i in range(10)], tmp_path / "one.jsonl")
    with pytest.raises(DataError, match="at least 2 examples of each label"):
        train_partitioner(one_label, tmp_path / "out")
    ok = write_pairs(synthesize_pairs(20, 0), tmp_path / "ok.jsonl")
    with pytest.raises(DivtuneError, match="does not exist"):
        train_partitioner(ok, tmp_path / "out", base=tmp_path / "no-such-base")
    with pytest.raises(DivtuneError, match="eval-fraction"):
        train_partitioner(ok, tmp_path / "out", config=PartitionerTrainConfig(eval_fraction=1.5))
    assert not (tmp_path / "out").exists()


def test_cli_synthesize_pairs(tmp_path, cli):
    r = cli("synthesize", "pairs", "-o", str(tmp_path / "p.jsonl"), "--num", "30", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert read_pairs(tmp_path / "p.jsonl") == synthesize_pairs(30, 3)


@pytest.mark.slow
def test_train_partitioner_then_use_it_as_the_darling_partitioner(tmp_path):
    """A short fine-tune of the packaged MiniLM-L6 on generated pairs: held-out accuracy and F1 well above
    chance, and the saved directory, used as the DARLING classifier partitioner, groups paraphrases."""
    from divtune.config import DarlingConfig
    from divtune.rewards.darling import build_darling_reward
    from divtune.train.partitioner import INFO_FILE, PartitionerTrainConfig, train_partitioner

    data = write_pairs(synthesize_pairs(900, seed=0), tmp_path / "pairs.jsonl")
    out = tmp_path / "clf"
    res = train_partitioner(data, out, config=PartitionerTrainConfig(epochs=1, learning_rate=1e-4, batch_size=16,
                                                                     max_length=48, eval_fraction=0.15))
    m = res.metrics
    assert res.eval_pairs == 135 and res.train_pairs == 765
    assert m["accuracy"] > 0.75 and m["f1"] > 0.75, m
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert json.loads((out / INFO_FILE).read_text())["metrics"]["f1"] == pytest.approx(m["f1"])
    assert not list(tmp_path.glob(".clf.*"))  # built atomically: no temp dir left behind

    reward = build_darling_reward(DarlingConfig(partitioner="classifier", partitioner_path=str(out), threshold=0.5,
                                                quality="none"))
    # three answers from the training banks, each in two phrasings the run drew at random
    texts = ["I would pick lion, that is my final choice.", "After thinking about it, I'll go with Lion.",
             "Out of all the options, Canada stands out, so I choose it.", "The option I select is canada.",
             "Sure! My selection from the list is Helicopter.", "If I have to pick just one, it would be Helicopter."]
    classes = reward.partitioner.partition(texts)
    assert classes[0] == classes[1] and classes[2] == classes[3] and classes[4] == classes[5], classes
    assert len(set(classes)) == 3, classes
    assert reward.partitioner.pairs_scored == 15
