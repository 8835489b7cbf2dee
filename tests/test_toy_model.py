"""The project-built toy base model: its tokenizer, its cache, and 'capable but biased'."""

from __future__ import annotations

import json

from divtune.data.lists import heldout_examples
from divtune.evaluate.generation import HFGenerator
from divtune.evaluate.lists import evaluate_lists
from divtune.models.toy import ensure_toy_model


def test_tokenizer_reloads_as_the_same_class_and_encodes_anything(toy_model_dir):
    from transformers import AutoTokenizer
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    assert type(tok) is Qwen2Tokenizer
    for text in ["Quetzalcoatl, Ñandú and 東京 🚀", "<answer>Zyzzyva</answer>", "tabs\tand\nnewlines  "]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id is None or tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_cache_hit_is_the_same_directory(toy_model_dir):
    again = ensure_toy_model()
    assert again == toy_model_dir
    report = json.loads((again / "divtune_toy.json").read_text())
    assert report["hash"] in again.name


def test_capable_but_biased_on_heldout_lists(toy_model_dir):
    """Issue 2: at temperature 1.0 on held-out lists, valid >= 95 % and JSD to uniform >= 0.30."""
    res = evaluate_lists(HFGenerator(toy_model_dir, batch_size=100), heldout_examples(), samples=100,
                         temperature=1.0, max_new_tokens=24, seed=1234)
    assert res["invalid_rate"] <= 0.05, res["invalid_rate"]
    assert res["jsd_mean"] >= 0.30, res["jsd_mean"]


def test_items_sharing_a_first_token_with_an_inner_word_are_copied_whole(toy_model_dir):
    """"Moby Dick" next to "Dracula": after "<answer>D" the copier continues an item start, so the answer is
    "Dracula", not the inner word "Dick" (recipe toy-v4, without that term: 28 % invalid on these lists)."""
    from divtune.data.lists import examples_from_lists

    lists = {
        "books": ["Hamlet", "Moby Dick", "Emma", "Dracula", "Ulysses", "Beloved", "Don Quixote", "Dune"],
        "foods": ["Taco", "Baked Potato", "Pizza", "Cherry Tart", "Popcorn", "Tiramisu", "Porridge", "Curry"],
        "cities": ["Cairo", "New York", "Nairobi", "San Diego", "Dallas", "Sydney", "Denver", "Naples"],
        "animals": ["Zebra", "Barn Owl", "Okapi", "Harpy Eagle", "Emu", "Ostrich", "Eland", "Otter"],
    }
    res = evaluate_lists(HFGenerator(toy_model_dir, batch_size=100), examples_from_lists(lists), samples=100,
                         temperature=1.0, max_new_tokens=24, seed=1234)
    assert res["invalid_rate"] <= 0.03, [(r["id"], r["invalid"], r["examples_invalid"]) for r in res["per_list"]]
    # the items whose first token is shared with an inner word are still chosen
    counts = {item: n for r in res["per_list"] for item, n in r["counts"].items()}
    assert sum(counts[x] for x in ("Dracula", "Dune", "Don Quixote", "Pizza", "Popcorn", "Porridge")) > 0, counts
