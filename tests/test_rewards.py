"""The GAPO frequency-aware reward against section 5.2 of the paper, extraction rules, and the
rank-correct TRL adapter."""

from __future__ import annotations

import pytest

from divtune.errors import ConfigError
from divtune.rewards.base import GroupRewardError
from divtune.answers.extract import match_item
from divtune.rewards.lists import FrequencyAwareReward, ValidityReward, frequency_aware_rewards
from divtune.rewards.trl_adapter import TRLGroupReward, check_batch_geometry


def paper_reward(answers, L):
    """r_i = 1 - (f(o_i) - 1/L) if o_i is valid else -1; f over the group's valid answers."""
    valid = [a for a in answers if a is not None]
    out = []
    for a in answers:
        if a is None:
            out.append(-1.0)
        else:
            out.append(1 - (valid.count(a) / len(valid) - 1 / L))
    return out


@pytest.mark.parametrize("answers,L", [
    (["A", "A", "A", "B"], 4),
    (["A", "B", "C", "D"], 4),            # uniform: every reward is exactly 1
    (["A", "A", "A", "A"], 4),            # collapse: 1 - (1 - 1/4) = 0.25
    (["A", None, "B", None, "B", "C"], 12),
    ([None, None, None], 5),              # all invalid
])
def test_frequency_reward_matches_paper(answers, L):
    assert frequency_aware_rewards(answers, L) == pytest.approx(paper_reward(answers, L))


def test_frequency_reward_values_by_hand():
    # group of 8 over L=4 items: A x4 (f=.5), B x2 (f=.25), C x1 (f=.125), one invalid (f over 7 valid)
    r = frequency_aware_rewards(["A", "A", "A", "A", "B", "B", "C", None], 4)
    assert r[0] == pytest.approx(1 - (4 / 7 - 0.25))
    assert r[4] == pytest.approx(1 - (2 / 7 - 0.25))
    assert r[6] == pytest.approx(1 - (1 / 7 - 0.25))
    assert r[7] == -1.0
    assert r[6] > r[4] > r[0] > r[7]  # rarer valid answers are rewarded more
    assert frequency_aware_rewards(["A", "B", "C", "D"], 4) == [1.0] * 4


def test_reward_reads_answer_tags():
    items = ["Mercury", "Venus", "Earth"]
    comps = ["<answer>Venus</answer>", "<answer> venus </answer>", "I pick <answer>Earth</answer>!",
             "Venus", "<answer>Pluto</answer>", "<answer>Venus</answer><answer>Earth</answer>"]
    assert [match_item(c, items) for c in comps] == ["Venus", "Venus", "Earth", None, None, None]
    r = FrequencyAwareReward()(comps, {"items": items})
    assert r == pytest.approx(paper_reward(["Venus", "Venus", "Earth", None, None, None], 3))
    assert ValidityReward()(comps, {"items": items}) == [1, 1, 1, -1, -1, -1]


def test_extraction_whitespace_and_case():
    items = ["New York", "Rio de Janeiro"]
    assert match_item("<ANSWER>new   york</ANSWER>", items) == "New York"
    assert match_item("<answer>\nRio de\tJaneiro\n</answer>", items) == "Rio de Janeiro"
    assert match_item("<answer></answer>", items) is None
    assert match_item("<answer>New York", items) is None  # unclosed


def _chat(t):
    return [{"role": "assistant", "content": t}]


def test_adapter_buckets_groups_and_matches_group_reward():
    fn = TRLGroupReward(FrequencyAwareReward(), 3, gather=None)
    comps = ["<answer>A</answer>", "<answer>A</answer>", "<answer>B</answer>",
             "<answer>C</answer>", "<answer>C</answer>", "x"]
    out = fn(prompts=[None] * 6, completions=[_chat(c) for c in comps], group_id=["g1"] * 3 + ["g2"] * 3,
             items=[["A", "B", "C"]] * 6)
    assert out[:3] == pytest.approx(paper_reward(["A", "A", "B"], 3))
    assert out[3:] == pytest.approx(paper_reward(["C", "C", None], 3))


def test_adapter_refuses_incomplete_group():
    fn = TRLGroupReward(FrequencyAwareReward(), 4, gather=None)
    with pytest.raises(GroupRewardError, match="expected a multiple of G=4"):
        fn(prompts=[None] * 3, completions=["<answer>A</answer>"] * 3, group_id=["g"] * 3, items=[["A", "B"]] * 3)


def test_adapter_needs_group_column():
    fn = TRLGroupReward(FrequencyAwareReward(), 2, gather=None)
    with pytest.raises(GroupRewardError, match="group_id"):
        fn(prompts=[None] * 2, completions=["a", "b"], items=[["A", "B"]] * 2)


def test_two_ranks_group_straddling_is_gathered():
    """A group of G=4 split 3/1 across two ranks gets the same rewards as scored whole."""
    items = ["A", "B", "C", "D"]
    comps = ["<answer>A</answer>"] * 3 + ["<answer>B</answer>"] + ["<answer>C</answer>"] * 2 + ["<answer>D</answer>"] * 2
    gids = ["g1"] * 4 + ["g2"] * 4
    rows = [(g, c, {"items": items}) for g, c in zip(gids, comps)]
    rank_rows = [rows[:3], rows[3:]]  # rank 0 holds 3 of g1; rank 1 holds the 4th of g1 and all of g2

    def fake_gather(rank):
        return lambda _rows: (rank_rows, rank)

    whole = paper_reward(["A", "A", "A", "B"], 4) + paper_reward(["C", "C", "D", "D"], 4)
    got = []
    for rank, part in enumerate(rank_rows):
        fn = TRLGroupReward(FrequencyAwareReward(), 4, gather=fake_gather(rank))
        got += fn(prompts=[None] * len(part), completions=[r[1] for r in part], group_id=[r[0] for r in part],
                  items=[items] * len(part))
    assert got == pytest.approx(whole)
    # without gathering, rank 0's slice alone is an incomplete group: refused, not mis-scored
    fn = TRLGroupReward(FrequencyAwareReward(), 4, gather=None)
    with pytest.raises(GroupRewardError):
        fn(prompts=[None] * 3, completions=[r[1] for r in rank_rows[0]], group_id=["g1"] * 3, items=[items] * 3)


def test_batch_geometry_checks():
    check_batch_geometry(8, 4, 32, 1, gather=True)  # paper: 8 x 4 = 32 = G
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        check_batch_geometry(6, 1, 4, 1, gather=True)
    with pytest.raises(ConfigError, match="straddle ranks"):
        check_batch_geometry(2, 1, 4, 2, gather=False)
    check_batch_geometry(2, 1, 4, 2, gather=True)  # straddling allowed when gathered


def test_num_generations_must_be_at_least_two():
    with pytest.raises(ConfigError):
        TRLGroupReward(FrequencyAwareReward(), 1)
