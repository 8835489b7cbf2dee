"""List synthesis: deterministic, schema-validated, clear errors."""

from __future__ import annotations

import json

import pytest

from divtune.data.banks import HELDOUT_LISTS, TRAIN_CATEGORIES, check_disjoint
from divtune.data.lists import load_user_lists, read_jsonl, synthesize_lists, write_jsonl
from divtune.data.templates import TEMPLATES
from divtune.errors import DataError


def test_same_seed_byte_identical(tmp_path):
    a = write_jsonl(synthesize_lists(200, 7), tmp_path / "a.jsonl").read_bytes()
    b = write_jsonl(synthesize_lists(200, 7), tmp_path / "b.jsonl").read_bytes()
    c = write_jsonl(synthesize_lists(200, 8), tmp_path / "c.jsonl").read_bytes()
    assert a == b and a != c


def test_records_follow_the_spec(tmp_path):
    ex = synthesize_lists(300, 0)
    assert {e.category for e in ex} == set(TRAIN_CATEGORIES)
    for e in ex:
        assert 4 <= len(e.items) <= 12 and len(set(e.items)) == len(e.items)
        assert e.prompt.startswith(TEMPLATES[e.template_id])
        assert e.prompt.endswith("Format your response as follows: <answer>selected_item</answer>.")
    back = read_jsonl(write_jsonl(ex, tmp_path / "d.jsonl"))
    assert back == ex


def test_banks_are_lists_the_synthesizer_can_draw_from():
    """Every bank holds distinct items (case-insensitively), enough for the longest list the synthesizer is
    asked for by default; held-out lists are valid lists; no held-out item is a training item."""
    from divtune.config import load_config

    d = load_config("toy").data
    for cat, items in {**TRAIN_CATEGORIES, **HELDOUT_LISTS}.items():
        assert len({x.casefold() for x in items}) == len(items), cat
        assert all(x.strip() == x and x for x in items), cat
    for cat in d.categories:
        assert len(TRAIN_CATEGORIES[cat]) >= d.max_len, cat
    assert len(set(TEMPLATES)) == len(TEMPLATES)
    assert check_disjoint() == []


@pytest.mark.parametrize("kwargs,msg", [
    ({"categories": ["dinosaurs"]}, "unknown category 'dinosaurs'"),
    ({"categories": []}, "no categories"),
    ({"min_len": 1}, "min_len must be >= 2"),
    ({"min_len": 9, "max_len": 5}, "larger than max_len"),
])
def test_bad_synthesis_arguments(kwargs, msg):
    with pytest.raises(DataError, match=msg):
        synthesize_lists(10, 0, **kwargs)


@pytest.mark.parametrize("content,msg", [
    ("", "contains no records"),
    ("{not json\n", "line 1 is not valid JSON"),
    ('{"id": "x"}\n', "missing field"),
])
def test_bad_dataset_files(tmp_path, content, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(DataError, match=msg):
        read_jsonl(p)


def test_dataset_with_duplicate_items_is_rejected(tmp_path):
    rec = synthesize_lists(1, 0)[0].to_dict()
    rec["items"] = ["A", "A", "B"]
    p = tmp_path / "dup.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="duplicate"):
        read_jsonl(p)


@pytest.mark.parametrize("lists,msg", [
    ([["Only"]], "at least 2"),
    ([["A", "a"]], "duplicate"),
    ([], "non-empty JSON list"),
    ([["A", ""]], "empty"),
])
def test_user_lists_validation(tmp_path, lists, msg):
    p = tmp_path / "lists.json"
    p.write_text(json.dumps(lists))
    with pytest.raises(DataError, match=msg):
        load_user_lists(p)


def test_prompting_style():
    from divtune.data.prompting import SHOTS, to_messages

    m = to_messages("Pick one: [a, b].", "SYS", 2)
    assert [x["role"] for x in m] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert m[2]["content"] == f"<answer>{SHOTS[0][1]}</answer>" and m[-1]["content"] == "Pick one: [a, b]."
    assert to_messages("p") == [{"role": "user", "content": "p"}]
    with pytest.raises(ValueError, match="few_shot"):
        to_messages("p", None, 9)


def test_pipeline_dataset_from_config_file_or_synthesis(tmp_path, aws_env):
    """The synthesize stage's dataset: synthesized lists / arithmetic, or a user's file (local or s3://),
    validated by the task's reader; prompts without a file is a one-line error."""
    import boto3

    from divtune.config import load_config
    from divtune.data.dataset import materialize, training_rows
    from divtune.errors import DataError, DivtuneError

    d = load_config("toy", overrides=["data.task=math", "data.num_examples=5"]).data
    assert materialize(d, tmp_path / "math.jsonl") == 5
    rows = training_rows("math", tmp_path / "math.jsonl")
    assert len(rows) == 5 and all(r["answer"] for r in rows)

    q = tmp_path / "prompts.jsonl"
    q.write_text('{"question": "Write a haiku about rain."}\n{"question": "Name a city."}\n')
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="data-bkt")
    s3.upload_file(str(q), "data-bkt", "sets/prompts.jsonl")
    for path in (str(q), "s3://data-bkt/sets/prompts.jsonl"):
        d = load_config("toy", overrides=["data.task=prompts", f"data.path={path}"]).data
        assert materialize(d, tmp_path / "out.jsonl") == 2
    with pytest.raises(DataError, match="set data.path"):
        materialize(load_config("toy", overrides=["data.task=prompts"]).data, tmp_path / "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": ""}\n')
    with pytest.raises(DataError, match="line 1"):
        materialize(load_config("toy", overrides=["data.task=prompts", f"data.path={bad}"]).data, tmp_path / "y.jsonl")
    assert not (tmp_path / "y.jsonl").exists()
    with pytest.raises(DivtuneError, match="s3://data-bkt/nope.jsonl"):
        materialize(load_config("toy", overrides=["data.task=math", "data.path=s3://data-bkt/nope.jsonl"]).data,
                    tmp_path / "z.jsonl")


@pytest.mark.parametrize("name", ["unseen-single-word", "unseen-multi-word"])
def test_shipped_evaluation_lists_load_and_share_no_item_with_training(name):
    """configs/lists/*.json (the README's unseen-list figures) are valid --lists files; the single-word one shares
    no item with the training banks."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "lists" / f"{name}.json"
    examples = load_user_lists(path)
    assert len(examples) == 10
    train_items = {x.casefold() for items in TRAIN_CATEGORIES.values() for x in items}
    if name == "unseen-single-word":
        assert not {x.casefold() for ex in examples for x in ex.items} & train_items
