"""DARLING's reward cost inside a GRPO step, on the toy (``toy-darling`` preset), in one run.

For each reward -- quality-only (list validity, what ``method: grpo`` trains with), DARLING with the exact
partitioner, DARLING with the embedding partitioner (all-MiniLM-L6-v2) and DARLING with a classifier
partitioner (a MiniLM-L6 pair classifier) -- a short GRPO run on the same base and data measures every step's
wall time and the time spent inside the reward (partition + quality + diagnostics) during that step.
Share = reward time / step time.  Goal: <= 10 %.  Separately: pairs scored per second by the classifier
partitioner (batched) on responses too long for the unigram shortcut, and what that would cost per step
if every pair of a G=16 group needed the classifier (the toy's tagged one-word answers mostly don't).

    .venv/bin/python benchmarks/darling_reward_time.py [--steps 6] [--rounds 1] [--classifier DIR]

Prints the figures and records them (``divtune.results.record``) as ``results/darling_reward_time-<date>.json``.
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Clock:
    def __init__(self) -> None:
        self.reward_s = 0.0


class _Timed:
    """A group reward that adds the seconds spent in it (call + diagnostics) to a clock."""

    def __init__(self, inner, clock: _Clock) -> None:
        self.inner, self.clock = inner, clock
        self.name = inner.name
        self.meta_keys = getattr(inner, "meta_keys", ("items",))

    def _timed(self, fn, *a):
        t = time.perf_counter()
        try:
            return fn(*a)
        finally:
            self.clock.reward_s += time.perf_counter() - t

    def __call__(self, completions, meta):
        return self._timed(self.inner, completions, meta)

    def diagnostics(self, completions, meta):
        if not hasattr(self.inner, "diagnostics"):
            return {}
        return self._timed(self.inner.diagnostics, completions, meta)


def run_variant(label: str, tc, base, rows, steps: int) -> list[tuple[float, float]]:
    """(step seconds, reward seconds within the step) for ``steps`` measured steps (one warm-up step dropped)."""
    from transformers import TrainerCallback

    import divtune.train.trainer as T

    clock = _Clock()
    out: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self.t = time.perf_counter()
            clock.reward_s = 0.0

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            out.append((time.perf_counter() - self.t, clock.reward_s))

    original = T.group_reward_for
    T.group_reward_for = lambda c: _Timed(original(c), clock)
    try:
        with tempfile.TemporaryDirectory() as d:
            T.train(base, rows, tc, f"{d}/adapter", f"{d}/ckpt", extra_callbacks=[StepClock()])
    finally:
        T.group_reward_for = original
    print(f"[bench] {label}: " + ", ".join(f"{s:.2f}s/{1000 * r:.1f}ms" for s, r in out), flush=True)
    return out[1:]


def make_speed_classifier(d: str) -> str:
    """A MiniLM-L6 pair classifier (packaged weights, fresh 2-label head): the toy partitioner's size."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from divtune.rewards.partition import default_embedding_model

    p = default_embedding_model()
    AutoModelForSequenceClassification.from_pretrained(p, num_labels=2).save_pretrained(d)
    AutoTokenizer.from_pretrained(p).save_pretrained(d)
    return d


def classifier_pairs_per_second(path: str, G: int = 16, groups: int = 4, batch_size: int = 64) -> dict[str, float]:
    """Batched pair scoring on G long responses per group (all G(G-1)/2 pairs go to the classifier)."""
    from divtune.data.pairs import synthesize_pairs
    from divtune.rewards.partition import ClassifierPartitioner

    part = ClassifierPartitioner(path, threshold=0.5, batch_size=batch_size, max_length=128)
    texts = [p.text1 for p in synthesize_pairs(G * groups * 4, seed=7) if len(p.text1.split()) > 5][: G * groups]
    part.partition(texts[:G])  # warm-up
    part.pairs_scored = 0
    t = time.perf_counter()
    for g in range(groups):
        part.partition(texts[g * G : (g + 1) * G])
    dt = time.perf_counter() - t
    return {"pairs": part.pairs_scored, "seconds": dt, "pairs_per_s": part.pairs_scored / dt,
            "seconds_per_group": dt / groups}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="measured GRPO steps per reward (plus one warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate all rewards this many times")
    ap.add_argument("--classifier", default=None, help="a trained pair classifier (default: MiniLM-L6, fresh head)")
    ap.add_argument("--skip-classifier-training-run", action="store_true",
                    help="measure the classifier partitioner's pairs/s only, not inside a GRPO run")
    args = ap.parse_args()

    from divtune.results import record  # imported first: the result names the commit this run started from

    import copy

    import torch

    from divtune.config import load_config
    from divtune.data.lists import synthesize_lists
    from divtune.models.toy import ensure_toy_model

    cfg = load_config("toy-darling")
    base = ensure_toy_model()
    rows = [e.to_row() for e in synthesize_lists(200, 0, cfg.data.categories, cfg.data.min_len, cfg.data.max_len)]
    tmp = tempfile.mkdtemp(prefix="divtune-bench-darling-")
    clf = args.classifier or make_speed_classifier(f"{tmp}/clf")

    variants = {}
    for label, method, part in (("quality-only (validity)", "grpo", None), ("DARLING exact", "darling", "exact"),
                                ("DARLING embedding", "darling", "embedding"),
                                ("DARLING classifier", "darling", "classifier")):
        if part == "classifier" and args.skip_classifier_training_run:
            continue
        tc = copy.deepcopy(cfg.train)
        tc.method, tc.max_steps, tc.save_steps, tc.logging_steps = method, args.steps + 1, 10_000, 10_000
        if part:
            tc.darling.partitioner = part
            tc.darling.partitioner_path = clf if part == "classifier" else None
            tc.darling.threshold = 0.5 if part == "classifier" else 0.8
        variants[label] = tc
    measured: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for label, tc in variants.items():
            measured[label] += run_variant(label, tc, base, rows, args.steps)

    speed = classifier_pairs_per_second(clf, G=cfg.train.num_generations)
    groups_per_step = cfg.train.per_device_train_batch_size // cfg.train.num_generations
    G = cfg.train.num_generations
    pairs_per_group = G * (G - 1) // 2

    table = ["| reward | median step (s) | reward per step (ms) | reward share of step |", "|---|---|---|---|"]
    result: dict[str, object] = {"device": "cuda" if torch.cuda.is_available() else "cpu",
                                 "G": G, "groups_per_step": groups_per_step, "rewards": {}}
    for label, vals in measured.items():
        step = statistics.median(v[0] for v in vals)
        rew = statistics.median(v[1] for v in vals)
        share = sum(v[1] for v in vals) / sum(v[0] for v in vals)
        result["rewards"][label] = {"median_step_s": step, "median_reward_s": rew, "share": share, "steps": len(vals)}
        table.append(f"| {label} | {step:.2f} | {1000 * rew:.1f} | {100 * share:.2f} % |")
    worst = pairs_per_group * groups_per_step / speed["pairs_per_s"]
    ref_step = result["rewards"]["DARLING exact"]["median_step_s"]
    result["classifier"] = {**speed, "worst_case_seconds_per_step": worst,
                            "worst_case_share": worst / (worst + ref_step)}
    table += ["", "| classifier partitioner (MiniLM-L6, batch 64) | value |", "|---|---|",
              f"| pairs scored per second | {speed['pairs_per_s']:.0f} |",
              f"| seconds per G={G} group, every pair scored ({pairs_per_group} pairs) | {speed['seconds_per_group']:.2f} |",
              f"| worst-case share of a toy step ({groups_per_step} groups, no shortcut) | "
              f"{100 * worst / (worst + ref_step):.1f} % |"]
    print(json.dumps(result, indent=2))
    print("\n" + "\n".join(table))
    ok = all(r["share"] <= 0.10 for r in result["rewards"].values())
    print(f"\ngoal: reward share <= 10 % of a GRPO step in the measured runs: {'met' if ok else 'NOT met'}")


    rows = [{"reward": label, **r} for label, r in result["rewards"].items()]
    settings = {"steps_per_run": args.steps, "warm_up_steps_dropped": 1, "rounds": args.rounds, "G": G,
                "groups_per_step": groups_per_step,
                "classifier": "given (--classifier)" if args.classifier else "MiniLM-L6, fresh head",
                "classifier_in_training_run": not args.skip_classifier_training_run, "device": result["device"],
                "goal_share_at_most": 0.10}
    path = record("darling_reward_time", {"rewards": rows, "classifier": result["classifier"], "goal_met": ok},
                  preset="toy-darling", settings=settings,
                  seeds={"train": cfg.train.seed, "data": 0, "classifier_pairs": 7})
    print(f"recorded result file {path.name}")


if __name__ == "__main__":
    main()
