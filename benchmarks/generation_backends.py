"""vLLM offline vs in-process transformers: the same model, lists, samples and sampling contract, side by side.

``evaluate.backend: auto`` takes vLLM where there is a GPU; this measures what that buys.  Both backends run the
lists suite (``divtune.evaluate.lists.evaluate_lists``) with one :class:`~divtune.models.sampling.SamplingParams`,
so the figures compare wall time *and* the metrics the samples give (JSD to uniform, invalid rate).  Goal: vLLM
>= 10x the samples per second of transformers on a GPU.

    .venv/bin/python benchmarks/generation_backends.py [--model smollm2|toy|DIR] [--lists 10] [--samples 100]
        [--max-new-tokens 32] [--batch 100] [--device auto|cpu|cuda]

Without a GPU (or without vLLM installed) the vLLM side is skipped with the reason, and the transformers side still
runs (on CPU): the result file says which sides ran.  Prints a table and records
``results/generation_backends-<date>.json`` through :func:`divtune.results.record`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIVTUNE_NO_PROGRESS", "1")

GOAL = 10.0


def vllm_unavailable() -> str | None:
    """Why the vLLM side cannot run here, or None."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (the eval image and the gpu extra have it)"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (default), toy, or a model directory")
    ap.add_argument("--lists", type=int, default=10, help="held-out lists (prompts)")
    ap.add_argument("--samples", type=int, default=100, help="samples per list")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=100, help="transformers batch size")
    ap.add_argument("--device", default=None, help="transformers device (default: cuda if available, else cpu)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    from divtune.results import record  # imported first: the result names the commit this run started from

    from divtune.config import load_config
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.generation import HFGenerator, SamplingParams, VLLMGenerator
    from divtune.evaluate.lists import evaluate_lists
    from divtune.models.resolve import resolve_base_model

    presets = {"smollm2": "smollm2-135m", "toy": "toy"}
    model = str(resolve_base_model(load_config(presets[args.model]).model)) if args.model in presets else args.model
    examples = heldout_examples(0)[: args.lists]
    sampling = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=args.seed)
    runs: list[dict] = []

    def measure(name: str, gen) -> None:
        evaluate_lists(gen, examples[:1], samples=2, sampling=sampling)  # warm-up (kernels, caches)
        t = time.perf_counter()
        res = evaluate_lists(gen, examples, samples=args.samples, sampling=sampling)
        wall = time.perf_counter() - t
        n = len(examples) * args.samples
        runs.append({"backend": name, "samples": n, "wall_s": wall, "samples_per_s": n / wall,
                     "jsd_mean": res["jsd_mean"], "invalid_rate": res["invalid_rate"],
                     "generator": res["generator"], "sampling": res["sampling"]})

    measure("transformers", HFGenerator(model, batch_size=args.batch, device=args.device))
    skipped = vllm_unavailable()
    if skipped:
        print(f"vLLM side skipped: {skipped}", file=sys.stderr)
    else:  # pragma: no cover - GPU machines only
        measure("vllm", VLLMGenerator(model))

    print("| backend | samples | wall (s) | samples/s | JSD to uniform | invalid rate |\n|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['backend']} | {r['samples']} | {r['wall_s']:.2f} | {r['samples_per_s']:.1f} | "
              f"{r['jsd_mean']:.3f} | {r['invalid_rate']:.3f} |")
    speedup = runs[1]["samples_per_s"] / runs[0]["samples_per_s"] if len(runs) == 2 else None
    if speedup is not None:
        print(f"\nvLLM vs transformers: {speedup:.1f}x (goal >= {GOAL:g}x)")
    figures = {"runs": [{k: v for k, v in r.items() if k not in ("generator", "sampling")} for r in runs],
               "speedup": speedup, "goal_met": None if speedup is None else speedup >= GOAL,
               "vllm_skipped": skipped}
    print(json.dumps(figures))
    settings = {"model": args.model if args.model in presets else "a model directory", "lists": len(examples),
                "samples_per_list": args.samples, "batch": args.batch, "sampling": sampling.to_dict(),
                "transformers_device": runs[0]["generator"]["device"], "goal_speedup_at_least": GOAL}
    path = record("generation_backends", figures, preset=presets.get(args.model), settings=settings,
                  seeds={"sampling": sampling.seed})
    print(f"recorded result file {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
