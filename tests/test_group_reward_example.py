"""docs/examples/custom_group_reward.py, run as a user runs it: TRL's GRPOTrainer with a group statistic of the
user's own through divtune's adapter, 2 steps on the toy.  Every group the reward scored must be one prompt's
whole group of G completions, its rewards must be the statistic recomputed here from those completions, and
what TRL logged per step must be the mean of exactly those groups' rewards."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLE = REPO / "docs" / "examples" / "custom_group_reward.py"
G, PROMPTS_PER_STEP, STEPS = 4, 2, 2


def _lists():
    spec = importlib.util.spec_from_file_location("custom_group_reward", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {f"list-{i}": items for i, items in enumerate(mod.LISTS)}, mod.answer


def _rarity(answers, items):
    """1 - share of the group giving the same answer; 0 for an answer that is not one of the items."""
    n = len(answers)
    return [0.0 if a not in items else 1.0 - sum(b == a for b in answers) / n for a in answers]


def test_example_scores_whole_groups(toy_model_dir, tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, str(EXAMPLE), "--model", str(toy_model_dir), "--steps", str(STEPS), "--output", str(out),
         "--num-generations", str(G), "--prompts-per-step", str(PROMPTS_PER_STEP)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lists, answer = _lists()
    groups = [json.loads(line) for line in (out / "groups.jsonl").read_text().splitlines()]
    assert len(groups) == STEPS * PROMPTS_PER_STEP

    for g in groups:
        items = lists[g["group_id"]]
        answers = [answer(c) for c in g["completions"]]
        assert len(g["completions"]) == G and len(g["rewards"]) == G
        # one prompt's group: no answer names an item of another list (the lists share no item)
        foreign = {a for other, its in lists.items() if other != g["group_id"] for a in its}
        assert not foreign & set(answers), (g["group_id"], answers)
        assert g["rewards"] == pytest.approx(_rarity(answers, items))

    # what the adapter handed back to TRL: per step, the mean and std TRL logged are those of the step's groups
    logged = [e for e in json.loads((out / "log_history.json").read_text()) if "rewards/answer_rarity/mean" in e]
    assert len(logged) == STEPS
    for step, entry in enumerate(logged):
        rewards = [r for g in groups[step * PROMPTS_PER_STEP:(step + 1) * PROMPTS_PER_STEP] for r in g["rewards"]]
        assert entry["rewards/answer_rarity/mean"] == pytest.approx(statistics.fmean(rewards), abs=1e-6)
        assert entry["rewards/answer_rarity/std"] == pytest.approx(statistics.stdev(rewards), abs=1e-5)
    assert (out / "model.safetensors").is_file()
