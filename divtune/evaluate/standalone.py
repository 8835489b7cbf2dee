"""One suite on one model or endpoint, outside the pipeline (``divtune evaluate``).

The CLI parses flags into :class:`SuiteRequest`; :func:`run` checks which flags the suite takes,
samples through the chosen backend, writes the suite's report files and (open-set, creative) its
MLflow run, and returns the result with a one-line summary.  The pipeline's evaluate stage uses
:mod:`divtune.evaluate.suites` instead, with the config's settings.
"""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Any

from divtune.errors import DivtuneError

#: Per-suite defaults where the suite's own differ from the common ones (the paper's 500 answers per open-set
#: category, creative writing's longer answers, the coherence benchmarks' temperature).
DEFAULTS: dict[str, dict[str, Any]] = {
    "lists": {"samples": 100, "max_new_tokens": 32, "temperature": 1.0},
    "open-set": {"samples": 500, "max_new_tokens": 32, "temperature": 1.0},
    "creative": {"samples": 100, "max_new_tokens": 160, "temperature": 1.0},
    "benchmarks": {"samples": 100, "max_new_tokens": 32, "temperature": 0.7},
}


@dataclasses.dataclass
class SuiteRequest:
    """What ``divtune evaluate SUITE`` was asked (None: the suite's default from :data:`DEFAULTS`)."""

    suite: str
    model: str | None = None
    endpoint: str | None = None
    timeout: float = 120.0
    samples: int | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    batch_size: int = 100
    seed: int = 1234
    template_id: int = 0
    system_prompt: str | None = None
    few_shot: int = 0
    positional: bool = False
    lists: str | None = None
    prompts: str | None = None
    temperatures: str | None = None
    out_dir: str | None = None
    force: bool = False
    no_mlflow: bool = False

    def with_defaults(self) -> SuiteRequest:
        d = DEFAULTS[self.suite]
        return dataclasses.replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})


def parse_temperatures(text: str) -> list[float]:
    temps = []
    for part in text.split(","):
        try:
            t = float(part)
        except ValueError:
            raise DivtuneError(f"--temperatures: {part.strip()!r} is not a number (e.g. 0.5,0.7,1.0)") from None
        if not t > 0:
            raise DivtuneError(f"--temperatures: {t:g} must be > 0")
        temps.append(t)
    return temps


def _check(r: SuiteRequest) -> None:
    if r.samples < 1:
        raise DivtuneError(f"--samples must be >= 1, got {r.samples}")
    if r.suite == "lists":
        return
    if r.max_new_tokens < 1:
        raise DivtuneError(f"--max-new-tokens must be >= 1, got {r.max_new_tokens}")
    if r.temperature < 0:
        raise DivtuneError(f"--temperature must be >= 0, got {r.temperature}")
    for flag, given in (("--lists", r.lists), ("--positional", r.positional)):
        if given:
            raise DivtuneError(f"{flag} applies to the lists suite, not {r.suite}")
    if r.temperatures and r.suite != "creative":
        raise DivtuneError("--temperatures applies to the creative suite only")
    if r.few_shot and r.suite != "open-set":
        raise DivtuneError(f"--few-shot applies to the lists and open-set suites, not {r.suite}")


def run(request: SuiteRequest) -> tuple[dict[str, Any], str]:
    """``(result, one-line summary)`` of the lists, open-set or creative suite (benchmarks: ``run_benchmarks``)."""
    r = request.with_defaults()
    _check(r)
    temps = parse_temperatures(r.temperatures) if r.temperatures else None
    if r.suite == "lists":
        return _lists(r)
    from divtune.evaluate.generation import make_generator

    common = dict(samples=r.samples, temperature=r.temperature, max_new_tokens=r.max_new_tokens, seed=r.seed,
                  system_prompt=r.system_prompt)
    if r.suite == "open-set":
        from divtune.data.open_set import load_prompts_file
        from divtune.evaluate.open_set import evaluate_open_set

        prompts = load_prompts_file(r.prompts) if r.prompts else None
        gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout)
        res = evaluate_open_set(gen, prompts, few_shot=r.few_shot, **common)
        line = (f"unique_at_n {res['unique_at_n']:.2f}  invalid_rate {res['invalid_rate']:.4f}  "
                f"({res['num_categories']} categories x {r.samples} samples)")
    else:
        from divtune.evaluate.creative import (SentenceEmbedder, creativity_coherence_curve, evaluate_creative,
                                               load_prompts_file)

        prompts = load_prompts_file(r.prompts) if r.prompts else None
        embedder = SentenceEmbedder()
        gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout)
        res = evaluate_creative(gen, prompts, embedder=embedder, **common)
        if temps:
            res["coherence_curve"] = creativity_coherence_curve(
                gen, temps, prompts, samples=r.samples, max_new_tokens=r.max_new_tokens, seed=r.seed,
                embedder=embedder, system_prompt=r.system_prompt, known={r.temperature: res})

        def fmt(v):
            return "n/a" if v is None else f"{v:.4f}"

        line = (f"pairwise_cosine_distance {fmt(res['pairwise_cosine_distance'])}  one_minus_self_bleu "
                f"{fmt(res['one_minus_self_bleu'])}  ({res['num_prompts']} prompts x {r.samples} samples)")
    _report(r, res)
    return res, line


def _lists(r: SuiteRequest) -> tuple[dict[str, Any], str]:
    from divtune.data.lists import heldout_examples, load_user_lists
    from divtune.evaluate.generation import make_generator
    from divtune.evaluate.lists import evaluate_lists

    examples = load_user_lists(r.lists, r.template_id) if r.lists else heldout_examples(r.template_id)
    gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout)
    res = evaluate_lists(gen, examples, samples=r.samples, temperature=r.temperature,
                         max_new_tokens=r.max_new_tokens, seed=r.seed, positional=r.positional,
                         system_prompt=r.system_prompt, few_shot=r.few_shot)
    return res, (f"jsd_mean {res['jsd_mean']:.4f}  invalid_rate {res['invalid_rate']:.4f}  "
                 f"({res['num_lists']} lists x {r.samples} samples)")


def _report(r: SuiteRequest, res: dict[str, Any]) -> None:
    """Report files to ``--out-dir`` and the MLflow run (unless ``--no-mlflow``); notes what went where."""
    import sys

    from divtune import paths
    from divtune.evaluate import report

    with tempfile.TemporaryDirectory(prefix="divtune-figs-") as tmp:
        files = report.write_report(r.suite, res, tmp)
        if r.out_dir:  # built aside, moved into place: a failure leaves the old --out-dir as it was
            import shutil

            from divtune import outputs

            with outputs.output_dir(r.out_dir, command="evaluate", force=r.force, flag="--out-dir") as d:
                for f in files:
                    shutil.copy2(f, d / f.name)
            pngs = sum(1 for f in files if f.suffix == ".png")
            print(f"wrote {r.suite}.json, {r.suite}.md and {pngs} PNG(s) to {r.out_dir}", file=sys.stderr)
        if not r.no_mlflow:
            md = next(f for f in files if f.suffix == ".md").read_text(encoding="utf-8")
            rid = report.log_evaluation(r.suite, res, [f for f in files if f.suffix == ".png"], md)
            res["mlflow"] = {"run_id": rid, "tracking_uri": paths.tracking_uri(), "experiment": report.EXPERIMENT}
            print(f"MLflow run {rid} ({report.EXPERIMENT}) at {paths.tracking_uri()}", file=sys.stderr)
