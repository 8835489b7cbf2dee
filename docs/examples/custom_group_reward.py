"""Train with a group statistic of your own: TRL's GRPOTrainer + divtune's rank-correct group-reward adapter.

The reward of each completion is ``1 - (share of its group giving the same answer)``, and 0 for an answer
that is not one of the prompt's items: a statistic over the whole group of G completions of one prompt,
which a per-completion TRL reward function cannot compute.  See docs/group-rewards.md.

    python docs/examples/custom_group_reward.py --model DIR --steps N --output DIR

Writes ``OUTPUT/groups.jsonl`` (every group the reward scored: its completions and rewards), the trained
model and ``OUTPUT/log_history.json`` (TRL's per-step logs, with ``rewards/answer_rarity/mean``).
"""

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from divtune.rewards.trl_adapter import TRLGroupReward, check_batch_geometry

LISTS = [["Mercury", "Venus", "Earth", "Mars"], ["red", "green", "blue", "yellow", "purple"],
         ["Paris", "Rome", "Madrid"], ["oak", "pine", "birch", "maple", "cedar", "elm"]]


def answer(text):
    m = re.search(r"<answer>(.*?)</answer>", text, re.S)
    return m.group(1).strip() if m else None


class AnswerRarity:
    """A GroupReward: gets one prompt's G completions (texts) and that prompt's metadata; returns G floats."""

    name = "answer_rarity"

    def __init__(self):
        self.seen = []  # every scored group, to show what the reward saw

    def __call__(self, completions, meta):
        answers = [answer(c) for c in completions]
        counts = Counter(answers)
        rewards = [1.0 - counts[a] / len(answers) if a in meta["items"] else 0.0 for a in answers]
        self.seen.append({"group_id": meta["group_id"], "completions": list(completions), "rewards": rewards})
        return rewards

    def diagnostics(self, completions, meta):  # logged by TRL as diversity/distinct_answers
        return {"distinct_answers": len({answer(c) for c in completions}) / len(completions)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--output", required=True)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    args = ap.parse_args()

    G, batch = args.num_generations, args.num_generations * args.prompts_per_step
    check_batch_geometry(batch, 1, G, 1, gather=True)  # fails early on a batch TRL cannot split into groups
    data = Dataset.from_list([
        {"prompt": [{"role": "user", "content": f"Please select one from these options: [{', '.join(items)}]. "
                                                "Format your response as follows: <answer>selected_item</answer>."}],
         "group_id": f"list-{i}", "items": items} for i, items in enumerate(LISTS)])
    reward = AnswerRarity()
    trainer = GRPOTrainer(
        model=args.model,
        reward_funcs=[TRLGroupReward(reward, G, meta_keys=("items", "group_id"))],
        args=GRPOConfig(output_dir=args.output, max_steps=args.steps, num_generations=G,
                        per_device_train_batch_size=batch, max_completion_length=16, learning_rate=1e-5,
                        logging_steps=1, save_strategy="no", report_to="none", bf16=torch.cuda.is_available()),
        train_dataset=data)
    trainer.train()
    trainer.save_model(args.output)

    out = Path(args.output)
    (out / "groups.jsonl").write_text("".join(json.dumps(g) + "\n" for g in reward.seen))
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    for g in reward.seen:
        print(g["group_id"], [answer(c) for c in g["completions"]], [round(r, 3) for r in g["rewards"]])


if __name__ == "__main__":
    main()
