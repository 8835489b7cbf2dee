"""One suite on one model or endpoint, outside the pipeline (``divtune evaluate``).

The CLI parses flags into :class:`SuiteRequest`; :func:`run` checks which flags the suite takes,
samples through the chosen backend, writes the suite's report files and (open-set, creative, novelty) its
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
    # NoveltyBench: k = 10 generations per prompt, T = 1, 512 tokens (its src/inference.py)
    "novelty": {"samples": 10, "max_new_tokens": 512, "temperature": 1.0},
}
#: The flags only ``evaluate novelty`` takes (SuiteRequest field -> flag).
NOVELTY_FLAGS = {"partitioner": "--partitioner", "partitioner_path": "--partitioner-path", "threshold": "--threshold",
                 "quality": "--quality", "reward_model": "--reward-model", "reward_scale": "--reward-scale",
                 "patience": "--patience"}


@dataclasses.dataclass
class SuiteRequest:
    """What ``divtune evaluate SUITE`` was asked (None: the suite's default from :data:`DEFAULTS`)."""

    suite: str
    model: str | None = None
    endpoint: str | None = None
    timeout: float = 120.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    backend: str = "auto"
    server: str = "auto"
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
    paper_prompts: bool = False
    partitioner: str | None = None
    partitioner_path: str | None = None
    threshold: float | None = None
    quality: str | None = None
    reward_model: str | None = None
    reward_scale: str | None = None
    patience: float | None = None

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
    if r.suite != "novelty":
        given = [flag for name, flag in NOVELTY_FLAGS.items() if getattr(r, name) is not None]
        if given:
            raise DivtuneError(f"{given[0]} applies to the novelty suite, not {r.suite}")
    if r.paper_prompts and r.suite != "open-set":
        raise DivtuneError(f"--paper-prompts applies to the open-set suite, not {r.suite}")
    if r.endpoint and r.backend != "auto":
        raise DivtuneError("--backend applies to --model (an endpoint's server samples; see --server)")
    if r.model and r.server != "auto":
        raise DivtuneError("--server applies to --endpoint, not --model (see --backend)")
    filters = {"--top-p": (r.top_p, 1.0), "--top-k": (r.top_k, 0), "--min-p": (r.min_p, 0.0),
               "--repetition-penalty": (r.repetition_penalty, 1.0)}
    changed = [flag for flag, (v, off) in filters.items() if v != off]
    if changed and r.suite not in ("lists", "open-set", "creative"):
        raise DivtuneError(f"{changed[0]} applies to the lists, open-set and creative suites ({r.suite} samples with "
                           "top_p 1, top_k 0, min_p 0 and repetition_penalty 1, sent explicitly)")
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
    if r.paper_prompts and r.prompts:
        raise DivtuneError("--paper-prompts and --prompts are exclusive (--paper-prompts is the built-in categories "
                           "in the paper's plain wording)")
    if r.suite == "novelty":
        if r.samples < 2:
            raise DivtuneError(f"novelty: --samples is k, the generations per prompt, and must be >= 2, "
                               f"got {r.samples}")
        if not r.prompts:
            raise DivtuneError("evaluate novelty needs --prompts FILE (JSONL, one {\"prompt\": ...} object a line, "
                               "the NB-Curated shape)")
        if r.patience is not None and not 0.0 < r.patience <= 1.0:
            raise DivtuneError(f"--patience must be in (0, 1], got {r.patience:g}")
    if r.few_shot and r.suite != "open-set":
        raise DivtuneError(f"--few-shot applies to the lists and open-set suites, not {r.suite}")


def run(request: SuiteRequest) -> tuple[dict[str, Any], str]:
    """``(result, one-line summary)`` of the lists, open-set, creative or novelty suite (benchmarks:
    ``run_benchmarks``)."""
    r = request.with_defaults()
    _check(r)
    temps = parse_temperatures(r.temperatures) if r.temperatures else None
    if r.suite == "lists":
        return _lists(r)
    from divtune.evaluate.generation import make_generator

    from divtune.models.sampling import from_config

    sampling = from_config(r)  # the request carries every field of the contract
    common = dict(samples=r.samples, temperature=r.temperature, max_new_tokens=r.max_new_tokens, seed=r.seed,
                  system_prompt=r.system_prompt, sampling=sampling)
    if r.suite == "open-set":
        from divtune.data.open_set import load_prompts_file
        from divtune.evaluate.open_set import evaluate_open_set

        prompts = load_prompts_file(r.prompts) if r.prompts else None
        gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout, backend=r.backend,
                         server=r.server)
        res = evaluate_open_set(gen, prompts, few_shot=r.few_shot, paper_prompts=r.paper_prompts, **common)
        line = (f"unique_at_n {res['unique_at_n']:.2f} (normalised)  unique_at_n_exact {res['unique_at_n_exact']:.2f}  "
                f"invalid_rate {res['invalid_rate']:.4f}  ({res['num_categories']} categories x {r.samples} samples"
                f"{', paper prompts' if r.paper_prompts else ''})")
    elif r.suite == "novelty":
        res, line = _novelty(r)
    else:
        from divtune.evaluate.creative import (SentenceEmbedder, creativity_coherence_curve, evaluate_creative,
                                               load_prompts_file)

        prompts = load_prompts_file(r.prompts) if r.prompts else None
        embedder = SentenceEmbedder()
        gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout, backend=r.backend,
                         server=r.server)
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


def _novelty(r: SuiteRequest) -> tuple[dict[str, Any], str]:
    from divtune.evaluate.generation import make_generator
    from divtune.evaluate.novelty import (NOVELTY_PATIENCE, NoveltyQuality, evaluate_novelty, load_novelty_prompts,
                                          make_novelty_partitioner)

    assert r.prompts
    prompts = load_novelty_prompts(r.prompts)  # bad input fails before any model loads
    quality = NoveltyQuality(r.quality, r.reward_model, reward_scale=r.reward_scale or "raw")
    part, info = make_novelty_partitioner(r.partitioner or "embedding", r.partitioner_path, r.threshold)
    gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout, backend=r.backend,
                         server=r.server)
    res = evaluate_novelty(gen, prompts, k=r.samples, partitioner=part, partitioner_info=info, quality=quality,
                           patience=NOVELTY_PATIENCE if r.patience is None else r.patience,
                           temperature=r.temperature, max_new_tokens=r.max_new_tokens, seed=r.seed,
                           system_prompt=r.system_prompt)
    k = res["k"]
    return res, (f"distinct_{k} {res['distinct_k']:.2f}  utility_{k} {res['utility_k']:.4f}  (partitioner "
                 f"{info['kind']}, quality {res['quality']['kind']}, patience {res['patience']:g}; "
                 f"{res['num_prompts']} prompts x {k} generations)")


def _lists(r: SuiteRequest) -> tuple[dict[str, Any], str]:
    from divtune.data.lists import heldout_examples, load_user_lists
    from divtune.evaluate.generation import make_generator
    from divtune.evaluate.lists import evaluate_lists
    from divtune.models.sampling import from_config

    examples = load_user_lists(r.lists, r.template_id) if r.lists else heldout_examples(r.template_id)
    gen = make_generator(r.model, r.endpoint, batch_size=r.batch_size, timeout=r.timeout, backend=r.backend,
                         server=r.server)
    sampling = from_config(r)
    res = evaluate_lists(gen, examples, samples=r.samples, sampling=sampling, positional=r.positional,
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
