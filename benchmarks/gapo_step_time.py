"""GAPO vs GRPO step time on the same toy model and G, measured side by side in one run.

The only difference between the two is the reward: GAPO's frequency-aware group reward versus
GRPO's per-sample validity reward.  Goal: ratio <= 1.02 (the group reward costs nothing next to
generation).  Runs alternate (GRPO, GAPO, GRPO, GAPO, ...) so machine drift hits both alike.

By default the learning rate is 0: both methods then sample the very same completions step for step
(same base, same seeds), so the ratio measures what the reward adds to a step, not the drift of
completion lengths between two policies that learn different things (with ``--lr 1e-4`` the ratio
moves by several percent either way from run to run on 2 CPU cores, while the reward itself is
~0.05 ms per group).  Generation, loss, backward and optimizer step all still run.  Machine noise
remains: on 2 CPU cores one run's ratio is worth about +-0.1, so read ``step_s`` (the same completions
step for step track each other) and ``reward_share_of_gapo_step`` with it.

    .venv/bin/python benchmarks/gapo_step_time.py [--rounds 3] [--steps 6] [--lr 0]

Prints the figures and records them (``divtune.results.record``) as ``results/gapo_step_time-<date>.json``;
``make results`` renders them into docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIVTUNE_NO_PROGRESS", "1")


def step_times(method: str, base, rows, steps: int, G: int, lr: float = 0.0) -> list[float]:
    from transformers import TrainerCallback

    from divtune.config import LoraConfig, TrainConfig
    from divtune.train.trainer import train

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            times.append(time.perf_counter() - self.t)

    tc = TrainConfig(method=method, num_generations=G, per_device_train_batch_size=2 * G,
                     gradient_accumulation_steps=1, max_steps=steps, learning_rate=lr, loss_type="grpo",
                     max_completion_length=16, save_steps=10_000, logging_steps=10_000,
                     lora=LoraConfig(r=16, alpha=32, dropout=0.0))
    with tempfile.TemporaryDirectory() as d:
        train(base, rows, tc, f"{d}/adapter", f"{d}/ckpt", extra_callbacks=[Clock()])
    return times[1:]  # the first step includes warm-up


def reward_call_time(G: int, groups: int = 200) -> dict[str, float]:
    """Microbenchmark: seconds per group for each reward alone."""
    import random

    from divtune.rewards.lists import FrequencyAwareReward, ValidityReward

    rng = random.Random(0)
    items = [f"Item{i}" for i in range(8)]
    batches = [[f"<answer>{rng.choice(items)}</answer>" for _ in range(G)] for _ in range(groups)]
    out = {}
    for name, fn in (("grpo", ValidityReward()), ("gapo", FrequencyAwareReward())):
        t = time.perf_counter()
        for b in batches:
            fn(b, {"items": items})
        out[name] = (time.perf_counter() - t) / groups
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--G", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.0, help="0: identical rollouts for both methods (see module doc)")
    args = ap.parse_args()

    from divtune.results import record  # imported first: the result names the commit this run started from

    from divtune.config import load_config
    from divtune.data.lists import synthesize_lists
    from divtune.models.toy import ensure_toy_model

    cfg = load_config("toy")
    base = ensure_toy_model()
    rows = [e.to_row() for e in synthesize_lists(200, 0, cfg.data.categories)]
    t = {"grpo": [], "gapo": []}
    for _ in range(args.rounds):
        for method in ("grpo", "gapo"):
            t[method] += step_times(method, base, rows, args.steps + 1, args.G, args.lr)
    med = {m: statistics.median(v) for m, v in t.items()}
    micro = reward_call_time(args.G)
    import torch

    result = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "G": args.G,
        "learning_rate": args.lr,
        "steps_measured": {m: len(v) for m, v in t.items()},
        "median_step_s": med,
        "step_s": {m: [round(x, 3) for x in v] for m, v in t.items()},
        "ratio_gapo_over_grpo": med["gapo"] / med["grpo"],
        # step i of a GAPO run against step i of the GRPO run before it: the same completions (lr 0)
        "paired_ratio_median": statistics.median(a / b for a, b in zip(t["gapo"], t["grpo"], strict=True)),
        "reward_seconds_per_group": micro,
        "reward_share_of_gapo_step": micro["gapo"] * 2 / med["gapo"],  # 2 groups per step
    }
    print(json.dumps(result, indent=2))
    print(f"\nGAPO/GRPO step-time ratio: {result['ratio_gapo_over_grpo']:.3f} (goal <= 1.02; step by step "
          f"{result['paired_ratio_median']:.3f}); GAPO reward = {100 * result['reward_share_of_gapo_step']:.3f} % of a step")

    from divtune.config import TrainConfig

    settings = {"rounds": args.rounds, "steps_per_run": args.steps, "warm_up_steps_dropped": 1, "G": args.G,
                "learning_rate": args.lr, "prompts_per_step": 2, "max_completion_length": 16, "lora_r": 16,
                "device": result["device"], "goal_ratio_at_most": 1.02}
    figures = {k: v for k, v in result.items() if k not in ("device", "G", "learning_rate")}
    path = record("gapo_step_time", figures, preset="toy", settings=settings,
                  seeds={"train": TrainConfig().seed, "data": 0, "reward_microbenchmark": 0})
    print(f"recorded result file {path.name}")


if __name__ == "__main__":
    main()
