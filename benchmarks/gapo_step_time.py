"""GAPO vs GRPO step time on the same toy model and G, measured side by side in one run.

The only difference between the two is the reward: GAPO's frequency-aware group reward versus
GRPO's per-sample validity reward.  Goal: ratio <= 1.02 (the group reward costs nothing next to
generation).  Runs alternate (GRPO, GAPO, GRPO, GAPO, ...) so machine drift hits both alike.

    .venv/bin/python benchmarks/gapo_step_time.py [--rounds 3] [--steps 4]
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


def step_times(method: str, base, rows, steps: int, G: int) -> list[float]:
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
                     gradient_accumulation_steps=1, max_steps=steps, learning_rate=1e-4, loss_type="grpo",
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
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--G", type=int, default=16)
    args = ap.parse_args()

    from divtune.config import load_config
    from divtune.data.lists import synthesize_lists
    from divtune.train.toy_model import ensure_toy_model

    cfg = load_config("toy")
    base = ensure_toy_model(cfg.model.toy, progress=False)
    rows = [e.to_row() for e in synthesize_lists(200, 0, cfg.data.categories)]
    t = {"grpo": [], "gapo": []}
    for _ in range(args.rounds):
        for method in ("grpo", "gapo"):
            t[method] += step_times(method, base, rows, args.steps + 1, args.G)
    med = {m: statistics.median(v) for m, v in t.items()}
    micro = reward_call_time(args.G)
    import torch

    result = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "G": args.G,
        "steps_measured": {m: len(v) for m, v in t.items()},
        "median_step_s": med,
        "ratio_gapo_over_grpo": med["gapo"] / med["grpo"],
        "reward_seconds_per_group": micro,
        "reward_share_of_gapo_step": micro["gapo"] * 2 / med["gapo"],  # 2 groups per step
    }
    print(json.dumps(result, indent=2))
    print(f"\nGAPO/GRPO step-time ratio: {result['ratio_gapo_over_grpo']:.3f} (goal <= 1.02); "
          f"GAPO reward = {100 * result['reward_share_of_gapo_step']:.3f} % of a step")


if __name__ == "__main__":
    main()
