"""The project-built toy base model: its tokenizer, its cache, and what the methods do to it.

The toy is a fixture for the plumbing, not a target: nothing here pins a figure its recipe was tuned to.
Its behaviour is checked relative to itself, on the same seeds: the base is biased, GAPO spreads its answers,
GRPO with a validity reward collapses them (the session's 2-step models, conftest.py).
"""

from __future__ import annotations

import json

from divtune.evaluate.generation import HFGenerator
from divtune.models.toy import ensure_toy_model

#: Samples per held-out list: the JSD estimate is biased upwards at small samples, alike for every model
#: sampled with the same count and seed, so the comparison holds (base 0.46, GAPO 0.19, GRPO 0.67 at 30).
SAMPLES = 20


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


def _held_out(model_dir, cfg) -> dict:
    from divtune.evaluate import suites

    res = suites.run_lists(HFGenerator(model_dir, batch_size=100), cfg, samples=SAMPLES)
    return {"jsd": res["jsd_mean"], "invalid": res["invalid_rate"],
            "unique": sum(p["unique"] for p in res["per_list"]) / len(res["per_list"])}


def test_gapo_spreads_the_biased_base_and_grpo_collapses_it(toy_model_dir, tiny_gapo, tiny_grpo):
    """Held-out lists, the same samples and seed for all three: the base is biased (GAPO, trained to spread its
    answers, ends closer to uniform), GAPO ends closer to uniform than GRPO, and GRPO with a validity reward
    keeps fewer distinct answers per list than the base had. The base answers in the format (most valid)."""
    cfg = tiny_gapo.cfg  # the evaluation settings (temperature, tokens, seed) are the same for both trainings
    base, gapo, grpo = (_held_out(m, cfg) for m in (toy_model_dir, tiny_gapo.merged, tiny_grpo.merged))
    figures = {"base": base, "gapo": gapo, "grpo": grpo}
    assert gapo["jsd"] < base["jsd"], figures
    assert gapo["jsd"] < grpo["jsd"], figures
    assert grpo["unique"] < base["unique"], figures
    assert base["invalid"] < 0.1, figures


def _first_token(tok, text: str) -> int:
    return tok(text, add_special_tokens=False)["input_ids"][0]


def test_items_sharing_a_first_token_with_an_inner_word_are_copied_whole(toy_model_dir):
    """"Moby Dick" next to "Dracula": after "<answer>D" the copier continues an item *start*, so the answer is
    "Dracula" (or "Dune", "Don Quixote"), never the inner word "Dick". On lists built so that items share their
    first token with another item's inner word: those items are chosen, no answer is an inner word copied as if
    it were an item, and invalid answers are rarer than those items."""
    from transformers import AutoTokenizer

    from divtune.answers.extract import extract_answer_text, match_item
    from divtune.data.lists import examples_from_lists
    from divtune.data.prompting import to_messages
    from divtune.evaluate.generation import SamplingParams

    lists = {
        "books": ["Hamlet", "Moby Dick", "Emma", "Dracula", "Ulysses", "Beloved", "Don Quixote", "Dune"],
        "foods": ["Taco", "Baked Potato", "Pizza", "Cherry Tart", "Popcorn", "Tiramisu", "Porridge", "Curry"],
        "cities": ["Cairo", "New York", "Nairobi", "San Diego", "Dallas", "Sydney", "Denver", "Naples"],
        "animals": ["Zebra", "Barn Owl", "Okapi", "Harpy Eagle", "Emu", "Ostrich", "Eland", "Otter"],
    }
    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    examples = examples_from_lists(lists)
    gen = HFGenerator(toy_model_dir, batch_size=100)
    outs = gen.generate([to_messages(ex.prompt) for ex in examples],
                        SamplingParams(n=50, temperature=1.0, max_new_tokens=24, seed=1234))
    shared_chosen = invalid = 0
    for ex, completions in zip(examples, outs, strict=True):
        items = list(ex.items)
        # an inner word (not an item's first) whose first token starts another item, and everything after it
        tails = {" ".join(item.split()[k:]) for item in items for k, w in enumerate(item.split()) if k
                 and any(_first_token(tok, w) == _first_token(tok, x) for x in items if x != item)}
        shared = [x for x in items if any(_first_token(tok, x) == _first_token(tok, t) for t in tails)]
        assert tails and shared, ex.category  # the list does set the trap
        answers = [match_item(c, items) for c in completions]
        chosen = sum(a in shared for a in answers)
        copied_inner = [c for c in completions if (extract_answer_text(c) or "").strip() in tails]
        assert not copied_inner, (ex.category, copied_inner[:5])
        shared_chosen += chosen
        invalid += sum(a is None for a in answers)
    assert 0 < shared_chosen and invalid < shared_chosen, (invalid, shared_chosen)
