"""Coherence benchmarks through lm-eval, fully offline: GSM8K, MATH, MMLU-Pro, HumanEval.

The GAPO paper's coherence check: GSM8K (200 sampled problems), MATH (30 per each of its 7 subjects),
MMLU-Pro (14 per each of its 14 categories) and HumanEval (all 164), sampled at temperature 0.7, 5 runs with
different seeds, reported as mean and spread (sample standard deviation) over the runs.

Everything runs through the real harness (``lm_eval.simple_evaluate``): the task configs *include* lm-eval's
own stock configs (``gsm8k/gsm8k.yaml``, ``hendrycks_math/hendrycks_math_<subject>.yaml``,
``mmlu_pro/mmlu_pro_<category>.yaml``), so prompts, few-shot construction, answer-extraction filters and
metrics are the harness's; only the data source changes (``dataset_path: json`` over local JSONL files).
HumanEval is the exception: the stock task fetches its code-execution metric from the hub when imported,
so ``lm_eval_tasks/divtune_humaneval.yaml`` is the stock config with an offline metric that runs each
candidate in :mod:`divtune.evaluate.sandbox` (only with ``allow_code_execution=True``).

Data layout (a directory, or the same layout under an ``s3://bucket/prefix``), JSONL in the public datasets'
schemas::

    gsm8k/test.jsonl          openai/gsm8k main test: question, answer ("... #### 42")
    gsm8k/train.jsonl         its train split: the few-shot examples (not needed with num_fewshot=0)
    math/test.jsonl           hendrycks MATH test (all subjects): problem, level, type, solution (\\boxed{})
    mmlu_pro/test.jsonl       TIGER-Lab/MMLU-Pro test: question, options, answer, answer_index, category, src
    mmlu_pro/validation.jsonl its validation split (cot_content): the per-category few-shot examples
    humaneval/test.jsonl      openai_humaneval: task_id, prompt, canonical_solution, test, entry_point

MATH reports two columns, like the GAPO paper's Table 2: ``exact_match,none`` (lm-eval's stock metric: the last
``\boxed{}`` of the response, string-equal to the reference after its normalisation; ``bench.math``) and
``verify,none`` ("Verify": the response's final answer -- :func:`divtune.answers.math.extract_final_answer` --
equivalent to the reference's ``\boxed{}`` numerically or symbolically with sympy,
:func:`divtune.answers.math.answers_equal`, the same check as DARLING's math quality; ``bench.math_verify``).
The paper does not say how its Verify was computed (math-verify, the package lm-eval's ``minerva_math`` uses,
is not installed here), so the two may differ in edge cases.

Sub-sampling is deterministic in ``seed`` and independent of the model, so two models compared by the gate
see the same problems and the same few-shot prompts; run ``i`` samples with seeds ``seed + i`` (python,
numpy, torch; the ``seed`` of each request for endpoints).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from divtune.errors import DataError, DivtuneError

TASKS = ("gsm8k", "math", "mmlu_pro", "humaneval")
DEFAULT_SEED = 1234
#: The paper's sample sizes: gsm8k problems, MATH per subject, MMLU-Pro per category (humaneval: all).
SAMPLE_SIZES = {"gsm8k": 200, "math": 30, "mmlu_pro": 14}
#: MATH ``type`` -> lm-eval's stock hendrycks_math subject config.
MATH_SUBJECTS = {
    "Algebra": "hendrycks_math_algebra",
    "Counting & Probability": "hendrycks_math_counting_and_prob",
    "Geometry": "hendrycks_math_geometry",
    "Intermediate Algebra": "hendrycks_math_intermediate_algebra",
    "Number Theory": "hendrycks_math_num_theory",
    "Prealgebra": "hendrycks_math_prealgebra",
    "Precalculus": "hendrycks_math_precalc",
}
MMLU_PRO_CATEGORIES = ("biology", "business", "chemistry", "computer science", "economics", "engineering",
                       "health", "history", "law", "math", "other", "philosophy", "physics", "psychology")
#: lm-eval's default number of few-shot examples per task (its stock configs).
STOCK_FEWSHOT = {"gsm8k": 5, "math": 0, "mmlu_pro": 5, "humaneval": 0}
#: The metric each benchmark reports as ``bench.<task>`` (lm-eval's "<metric>,<filter>" key).
PRIMARY_METRIC = {"gsm8k": "exact_match,flexible-extract", "math": "exact_match,none",
                  "mmlu_pro": "exact_match,custom-extract", "humaneval": "pass@1,create_test"}
#: Further columns reported as flat metrics: ``bench.<name>`` -> (task, metric key).
EXTRA_METRICS = {"bench.math_verify": ("math", "verify,none")}
VERIFY_METRIC = "verify,none"
_SCHEMAS = {
    "gsm8k/test.jsonl": ("question", "answer"),
    "gsm8k/train.jsonl": ("question", "answer"),
    "math/test.jsonl": ("problem", "solution", "type"),
    "mmlu_pro/test.jsonl": ("question", "options", "answer", "category"),
    "mmlu_pro/validation.jsonl": ("question", "options", "answer", "category", "cot_content"),
    "humaneval/test.jsonl": ("task_id", "prompt", "test", "entry_point"),
}
TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"


# --------------------------------------------------------------------------------------
# data: locate, read, validate, sample
# --------------------------------------------------------------------------------------


def required_files(tasks: Sequence[str], num_fewshot: int | None = None) -> list[str]:
    """Relative paths under the data root that ``tasks`` need."""
    out: list[str] = []
    for t in tasks:
        shots = _shots(t, num_fewshot)
        out.append(f"{t}/test.jsonl")
        if t == "gsm8k" and shots:
            out.append("gsm8k/train.jsonl")
        if t == "mmlu_pro" and shots:
            out.append("mmlu_pro/validation.jsonl")
    return out


def _shots(task: str, num_fewshot: int | None) -> int:
    # like lm-eval's num_fewshot override: tasks whose stock config is zero-shot stay zero-shot
    return STOCK_FEWSHOT[task] if (num_fewshot is None or STOCK_FEWSHOT[task] == 0) else num_fewshot


def _locate(data: str, rels: list[str], work: Path) -> tuple[Path, str]:
    """Local root holding ``rels`` (downloaded from S3 if ``data`` is ``s3://``) and how to name it in messages."""
    if data.startswith("s3://"):
        return _fetch_s3(data, rels, work / "s3"), data.rstrip("/")
    root = Path(data)
    if not root.is_dir():
        raise DivtuneError(f"benchmark data directory does not exist: {data}")
    missing = [str(root / r) for r in rels if not (root / r).is_file()]
    if missing:
        raise DataError(f"benchmark data file missing: {', '.join(missing)} (layout: see `divtune evaluate "
                        f"benchmarks --help`)")
    return root, str(root)


def _fetch_s3(uri: str, rels: list[str], dst: Path) -> Path:
    """Download just the files the tasks need from an ``s3://`` prefix (no upload manifest required)."""
    from botocore.exceptions import ClientError

    from divtune import storage

    bucket, prefix = storage.parse_s3_uri(uri)
    s3 = storage.client()
    storage.require_bucket(uri, f"cannot read {uri}", s3=s3)
    missing: list[str] = []
    for rel in rels:
        key = f"{prefix}/{rel}" if prefix else rel
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(bucket, key, str(out))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey"):
                missing.append(f"s3://{bucket}/{key}")
                continue
            raise storage._explain(exc, f"cannot download s3://{bucket}/{key}") from None
        except Exception as exc:  # noqa: BLE001 - endpoint down, credentials: one line
            raise storage._explain(exc, f"cannot download s3://{bucket}/{key}") from None
    if missing:
        raise DataError(f"benchmark data file missing: {', '.join(missing)}")
    return dst


def read_jsonl(path: Path, required: Sequence[str], shown: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each an object with the ``required`` keys; errors name the file and line."""
    from divtune.data.jsonl import read_lines

    rows: list[dict[str, Any]] = []
    for n, line in read_lines(path, noun="benchmark data"):  # size-bounded, UTF-8, one line per error
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DataError(f"{shown} line {n}: not valid JSON ({getattr(exc, 'msg', 'nested too deep')})") from None
        if not isinstance(row, dict):
            raise DataError(f"{shown} line {n}: expected a JSON object, got {type(row).__name__}")
        lacking = [k for k in required if k not in row]
        if lacking:
            raise DataError(f"{shown} line {n}: missing field(s) {', '.join(lacking)}")
        row["_line"] = n
        rows.append(row)
    if not rows:
        raise DataError(f"{shown}: no rows")
    return rows


def _check_rows(rel: str, rows: list[dict], shown: str) -> None:
    for r in rows:
        where = f"{shown} line {r['_line']}"
        if rel.startswith("gsm8k/") and "####" not in str(r["answer"]):
            raise DataError(f"{where}: answer has no '#### <number>' final answer (GSM8K format)")
        if rel == "math/test.jsonl":
            if r["type"] not in MATH_SUBJECTS:
                raise DataError(f"{where}: unknown MATH type {r['type']!r} (known: {', '.join(MATH_SUBJECTS)})")
            if "\\boxed" not in r["solution"] and "\\fbox" not in r["solution"]:
                raise DataError(f"{where}: solution has no \\boxed{{}} final answer (MATH format)")
        if rel.startswith("mmlu_pro/"):
            if r["category"] not in MMLU_PRO_CATEGORIES:
                raise DataError(f"{where}: unknown MMLU-Pro category {r['category']!r}")
            if not isinstance(r["options"], list) or not r["options"]:
                raise DataError(f"{where}: options must be a non-empty list")


def _sample(rows: list[dict], n: int | None, rng: random.Random) -> list[dict]:
    if n is None or len(rows) <= n:
        return list(rows)
    idx = sorted(rng.sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def _by_subject(rows: list[dict], key: str, subjects: Sequence[str], per: int | None, seed: int,
                shown: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {s: [] for s in subjects}
    for r in rows:
        groups[r[key]].append(r)
    absent = [s for s, g in groups.items() if not g]
    if absent:
        raise DataError(f"{shown}: no rows for {key} {', '.join(repr(s) for s in absent)} (every subject is needed)")
    # one generator per subject, so each subject's sample does not depend on the others' sizes
    return {s: _sample(g, per, random.Random(f"{seed}:{s}")) for s, g in groups.items()}


def _round_robin(groups: dict[str, list[dict]], limit: int | None) -> dict[str, list[dict]]:
    """At most ``limit`` rows in all, taken one subject at a time so every subject stays represented."""
    if limit is None:
        return groups
    out: dict[str, list[dict]] = {s: [] for s in groups}
    i, total = 0, 0
    while total < limit and any(len(out[s]) < len(g) for s, g in groups.items()):
        for s, g in groups.items():
            if total < limit and i < len(g):
                out[s].append(g[i])
                total += 1
        i += 1
    return {s: rows for s, rows in out.items() if rows}


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if k != "_line"}, ensure_ascii=False) + "\n")
    return str(path)


# --------------------------------------------------------------------------------------
# task configs
# --------------------------------------------------------------------------------------


@dataclass
class PreparedTask:
    """One benchmark, ready for lm-eval: its task (or group) name and what was sampled."""

    name: str
    lm_eval_task: str
    num_docs: int
    num_fewshot: int
    subjects: dict[str, int] = field(default_factory=dict)
    subtasks: list[str] = field(default_factory=list)


def _stock(rel: str) -> str:
    import lm_eval.tasks

    p = Path(lm_eval.tasks.__file__).resolve().parent / rel
    if not p.is_file():  # pragma: no cover - a different lm-eval layout
        raise DivtuneError(f"lm-eval's stock task config {p} is missing (lm-eval 0.4.13 expected)")
    return str(p)


def _dataset(files: dict[str, str], cache: Path) -> dict[str, Any]:
    return {"dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": files, "cache_dir": str(cache)}}


def _dump(path: Path, cfg: dict[str, Any]) -> None:
    path.write_text("# written by divtune.evaluate.benchmarks for one evaluation\n"
                    + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def prepare(task: str, root: Path, shown: str, work: Path, *, seed: int, num_fewshot: int | None,
            limit: int | None, sample_sizes: dict[str, int | None]) -> PreparedTask:
    """Read, validate and sample one benchmark's data; write its lm-eval task config(s) under ``work``."""
    data_dir, tasks_dir, cache = work / "data", work / "tasks", work / "hf-datasets"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    shots = _shots(task, num_fewshot)

    def load(rel: str) -> list[dict]:
        rows = read_jsonl(root / rel, _SCHEMAS[rel], f"{shown}/{rel}")
        _check_rows(rel, rows, f"{shown}/{rel}")
        return rows

    if task == "gsm8k":
        rows = _sample(load("gsm8k/test.jsonl"), sample_sizes.get("gsm8k"), random.Random(f"{seed}:gsm8k"))
        rows = rows[:limit] if limit else rows
        files = {"test": _write_jsonl(data_dir / "gsm8k_test.jsonl", rows)}
        cfg: dict[str, Any] = {"include": _stock("gsm8k/gsm8k.yaml"), "task": "divtune_gsm8k", "tag": []}
        if shots:
            train = load("gsm8k/train.jsonl")
            if len(train) < shots:
                raise DataError(f"{shown}/gsm8k/train.jsonl: {len(train)} rows, {shots}-shot prompts need {shots}")
            files["train"] = _write_jsonl(data_dir / "gsm8k_train.jsonl", train)
        else:
            cfg.update(training_split=None, fewshot_split=None)
        cfg.update(_dataset(files, cache), num_fewshot=shots)
        _dump(tasks_dir / "divtune_gsm8k.yaml", cfg)
        return PreparedTask(task, "divtune_gsm8k", len(rows), shots)

    if task == "math":
        groups = _by_subject(load("math/test.jsonl"), "type", list(MATH_SUBJECTS), sample_sizes.get("math"),
                             seed, f"{shown}/math/test.jsonl")
        groups = _round_robin(groups, limit)
        names = []
        for subject, rows in groups.items():
            stock = MATH_SUBJECTS[subject]
            name = "divtune_math_" + stock.removeprefix("hendrycks_math_")
            f = _write_jsonl(data_dir / f"{name}.jsonl", rows)
            _dump(tasks_dir / f"{name}.yaml", {"include": _stock(f"hendrycks_math/{stock}.yaml"), "task": name,
                                              "tag": [], **_dataset({"test": f}, cache), "training_split": None,
                                              "num_fewshot": 0})
            names.append(name)
        _dump(tasks_dir / "divtune_math.yaml", {
            "group": "divtune_math", "task": names,
            "aggregate_metric_list": [{"metric": "exact_match", "aggregation": "mean", "weight_by_size": True}],
            "metadata": {"version": 1.0}})
        return PreparedTask(task, "divtune_math", sum(len(r) for r in groups.values()), 0,
                            {s: len(r) for s, r in groups.items()}, names)

    if task == "mmlu_pro":
        groups = _by_subject(load("mmlu_pro/test.jsonl"), "category", MMLU_PRO_CATEGORIES,
                             sample_sizes.get("mmlu_pro"), seed, f"{shown}/mmlu_pro/test.jsonl")
        groups = _round_robin(groups, limit)
        files = {"test": _write_jsonl(data_dir / "mmlu_pro_test.jsonl", [r for g in groups.values() for r in g])}
        if shots:
            val = load("mmlu_pro/validation.jsonl")
            for cat in groups:
                have = sum(r["category"] == cat for r in val)
                if have < shots:
                    raise DataError(f"{shown}/mmlu_pro/validation.jsonl: {have} rows for category {cat!r}, "
                                    f"{shots}-shot prompts need {shots}")
            files["validation"] = _write_jsonl(data_dir / "mmlu_pro_validation.jsonl", val)
        names = []
        for cat in groups:
            stem = cat.replace(" ", "_")
            name = f"divtune_mmlu_pro_{stem}"
            cfg = {"include": _stock(f"mmlu_pro/mmlu_pro_{stem}.yaml"), "task": name, "task_alias": cat,
                   **_dataset(files, cache), "num_fewshot": shots}
            if not shots:
                cfg.update(fewshot_split=None, fewshot_config=None)
            _dump(tasks_dir / f"{name}.yaml", cfg)
            names.append(name)
        _dump(tasks_dir / "divtune_mmlu_pro.yaml", {
            "group": "divtune_mmlu_pro", "task": names,
            "aggregate_metric_list": [{"aggregation": "mean", "metric": "exact_match", "weight_by_size": True,
                                       "filter_list": "custom-extract"}],
            "metadata": {"version": 2.0}})
        return PreparedTask(task, "divtune_mmlu_pro", sum(len(r) for r in groups.values()), shots,
                            {s: len(r) for s, r in groups.items()}, names)

    if task == "humaneval":
        rows = _sample(load("humaneval/test.jsonl"), sample_sizes.get("humaneval"),
                       random.Random(f"{seed}:humaneval"))
        rows = rows[:limit] if limit else rows
        f = _write_jsonl(data_dir / "humaneval_test.jsonl", rows)
        _dump(tasks_dir / "divtune_humaneval_local.yaml", {
            "include": str(TASKS_DIR / "divtune_humaneval.yaml"), "task": "divtune_humaneval_local",
            **_dataset({"test": f}, cache)})
        return PreparedTask(task, "divtune_humaneval_local", len(rows), 0)

    raise DivtuneError(f"unknown benchmark {task!r} (known: {', '.join(TASKS)})")  # pragma: no cover


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


def _hf_lm(model: str, batch_size: int | str, device: str | None, trust_remote_code: bool):
    import torch
    from lm_eval.api.registry import get_model

    from divtune.models.resolve import resolve_model

    path = resolve_model(model)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = get_model("hf").create_from_arg_obj(
        {"pretrained": str(path), "dtype": "auto", "trust_remote_code": trust_remote_code},
        {"batch_size": batch_size, "device": dev})
    return lm, {"type": "hf", "model": model, "path": str(path), "device": dev}


def _endpoint_lm_factory(endpoint: str, chat: bool, concurrency: int):
    """A function seed -> lm-eval API model (one per run: the request ``seed`` is a constructor argument)."""
    from lm_eval.api.registry import get_model

    from divtune.evaluate.generation import OpenAIGenerator

    try:
        import tenacity  # noqa: F401 - lm-eval's API models need it (lm-eval[api])
    except ImportError:
        raise DivtuneError("--endpoint needs lm-eval's API extra: pip install tenacity (lm-eval[api])") from None
    probe = OpenAIGenerator(endpoint)  # normalises the base URL and asks /v1/models for the served id
    kind = "local-chat-completions" if chat else "local-completions"
    url = probe.base + ("/chat/completions" if chat else "/completions")
    args: dict[str, Any] = {"model": probe.model, "base_url": url, "tokenizer_backend": "none",
                            "tokenized_requests": False, "num_concurrent": concurrency, "max_retries": 3,
                            "timeout": 300}
    if probe.api_key:
        args["header"] = {"Authorization": f"Bearer {probe.api_key}", "Content-Type": "application/json"}

    def make(seed: int):
        return get_model(kind).create_from_arg_obj({**args, "seed": seed}, {"batch_size": 1})

    return make, {"type": kind, "endpoint": probe.base, "model": probe.model, "base_url": url}


@contextlib.contextmanager
def _lean_harness() -> Iterator[None]:
    """simple_evaluate collects torch's environment report and git hashes on every call (several seconds,
    and ``git`` noise outside a repository): do that once per process and reuse it for all runs."""
    import lm_eval.evaluator as ev

    orig_env, orig_git = ev.add_env_info, ev.get_git_commit_hash
    cache: dict[str, Any] = {}

    def env_info(storage: dict[str, Any]) -> None:
        if not cache:
            probe: dict[str, Any] = {}
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                orig_env(probe)
            cache.update(probe)
        storage.update(cache)

    def not_cli_note(record: logging.LogRecord) -> bool:  # "gen_kwargs specified through cli": they are ours
        return not str(record.msg).startswith("generation_kwargs:")

    import datasets

    quiet = os.environ.get("DIVTUNE_NO_PROGRESS") == "1" and datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    log = logging.getLogger("lm_eval.evaluator")
    log.addFilter(not_cli_note)
    ev.add_env_info, ev.get_git_commit_hash = env_info, lambda: None
    try:
        yield
    finally:
        ev.add_env_info, ev.get_git_commit_hash = orig_env, orig_git
        log.removeFilter(not_cli_note)
        if quiet:
            datasets.enable_progress_bars()


# --------------------------------------------------------------------------------------
# the evaluation
# --------------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "values": vals}


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in entry.items()
            if "," in k and "_stderr" not in k and isinstance(v, (int, float)) and not isinstance(v, bool)
            and not math.isnan(float(v))}


def math_verify(samples: Sequence[dict[str, Any]]) -> float | None:
    """MATH "Verify": the share of logged lm-eval samples whose final answer is equivalent to the reference.

    Each sample is lm-eval's logged record (``doc`` with the MATH ``solution``, ``filtered_resps`` with the
    response); the reference is the solution's last ``\boxed{}``.  ``None`` without samples.
    """
    from divtune.answers.math import answers_equal, extract_final_answer, gold_answer

    hits = []
    for s in samples:
        resp = s.get("filtered_resps") or s.get("resps") or [""]
        while isinstance(resp, list):
            resp = resp[0] if resp else ""
        doc = s.get("doc") or {}
        gold = gold_answer(doc.get("solution") or doc.get("answer"))
        hits.append(answers_equal(extract_final_answer(str(resp)), gold))
    return sum(hits) / len(hits) if hits else None


def _digest(samples: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: (s.get("doc_id", 0), s.get("filter", ""))):
        h.update(json.dumps([s.get("doc_id"), s.get("filter"), s.get("resps")], default=str).encode())
    return h.hexdigest()[:16]


def parse_tasks(spec: str | Sequence[str]) -> tuple[str, ...]:
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    bad = [t for t in names if t not in TASKS]
    if bad or not names:
        raise DivtuneError(f"--tasks: unknown benchmark {bad[0] if bad else '(none)'!r} (known: {', '.join(TASKS)})")
    return tuple(dict.fromkeys(names))


def run_benchmarks(model: str | None = None, endpoint: str | None = None, data: str | os.PathLike | None = None,
                   tasks: str | Sequence[str] = TASKS, runs: int = 5, temperature: float = 0.7,
                   allow_code_execution: bool = False, limit: int | None = None, seed: int = DEFAULT_SEED,
                   num_fewshot: int | None = None, max_gen_toks: int | None = None, batch_size: int | str = 16,
                   apply_chat_template: bool = False, device: str | None = None,
                   sample_sizes: dict[str, int | None] | None = None, trust_remote_code: bool = False,
                   concurrency: int = 8) -> dict[str, Any]:
    """Evaluate a model (local dir / ``models:/NAME@alias``) or an OpenAI-compatible endpoint on the coherence
    benchmarks; returns per-task mean/std/per-run values and the flat ``bench.<task>`` metrics for the gate.

    ``limit`` caps the examples per benchmark after sampling (smoke runs); ``num_fewshot`` overrides the stock
    few-shot count of gsm8k and mmlu_pro; ``max_gen_toks`` caps generated tokens (default: each task's own);
    ``sample_sizes`` overrides :data:`SAMPLE_SIZES` (``None`` for a benchmark: all rows).
    """
    names = parse_tasks(tasks)
    if (model is None) == (endpoint is None):
        raise DivtuneError("give exactly one of --model and --endpoint")
    if data is None or not str(data).strip():
        raise DivtuneError("benchmarks need --data DIR|s3://bucket/prefix (the benchmark JSONL files)")
    if runs < 1:
        raise DivtuneError(f"--runs must be >= 1, got {runs}")
    if temperature < 0:
        raise DivtuneError(f"--temperature must be >= 0, got {temperature}")
    if limit is not None and limit < 1:
        raise DivtuneError(f"--limit must be >= 1, got {limit}")
    if num_fewshot is not None and num_fewshot < 0:
        raise DivtuneError(f"--num-fewshot must be >= 0, got {num_fewshot}")
    if max_gen_toks is not None and max_gen_toks < 1:
        raise DivtuneError(f"--max-gen-toks must be >= 1, got {max_gen_toks}")
    if "humaneval" in names and not allow_code_execution:
        raise DivtuneError("humaneval executes model-written code: pass --allow-code-execution to run it (in a "
                           "sandboxed subprocess with a time limit), or leave it out of --tasks")
    sizes = {**SAMPLE_SIZES, **(sample_sizes or {})}

    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="divtune-bench-") as tmp:
        work = Path(tmp)
        root, shown = _locate(str(data), required_files(names, num_fewshot), work)
        prepared = [prepare(t, root, shown, work, seed=seed, num_fewshot=num_fewshot, limit=limit,
                            sample_sizes=sizes) for t in names]
        tm = TaskManager(include_path=str(work / "tasks"), include_defaults=False)

        if endpoint is not None:
            make_lm, model_info = _endpoint_lm_factory(endpoint, apply_chat_template, concurrency)
            hf_lm = None
        else:
            assert model is not None
            hf_lm, model_info = _hf_lm(model, batch_size, device, trust_remote_code)
            make_lm = None

        gen_kwargs: dict[str, Any] = {"do_sample": temperature > 0, "temperature": temperature}
        if hf_lm is not None:  # in process: nothing from the model's generation_config.json (1.05 penalty on Qwen2.5)
            gen_kwargs.update(top_p=1.0, top_k=0, repetition_penalty=1.0)
        if max_gen_toks is not None:
            gen_kwargs["max_gen_toks"] = max_gen_toks
        per_run: list[dict[str, Any]] = []
        with _lean_harness():
            for i in range(runs):
                run_seed = seed + i
                lm = hf_lm if hf_lm is not None else make_lm(run_seed)
                out = lm_eval.simple_evaluate(
                    model=lm, tasks=[p.lm_eval_task for p in prepared], task_manager=tm,
                    gen_kwargs=dict(gen_kwargs), bootstrap_iters=0, log_samples=True,
                    random_seed=run_seed, numpy_random_seed=run_seed, torch_random_seed=run_seed,
                    fewshot_random_seed=seed, confirm_run_unsafe_code=allow_code_execution,
                    apply_chat_template=apply_chat_template, fewshot_as_multiturn=apply_chat_template)
                if out is None:  # pragma: no cover - non-zero rank
                    raise DivtuneError("lm-eval returned no results (non-zero rank)")
                per_run.append(_run_record(out, prepared, run_seed))

    return _summarise(per_run, prepared, {
        "suite": "benchmarks", "model": model_info, "data": str(data), "tasks": list(names), "runs": runs,
        "seed": seed, "run_seeds": [seed + i for i in range(runs)], "temperature": temperature,
        "max_gen_toks": max_gen_toks, "limit": limit, "sample_sizes": sizes,
        "apply_chat_template": apply_chat_template, "lm_eval_version": getattr(lm_eval, "__version__", "?")})


def _run_record(out: dict[str, Any], prepared: list[PreparedTask], run_seed: int) -> dict[str, Any]:
    results = {**out.get("groups", {}), **out["results"]}
    rec: dict[str, Any] = {"seed": run_seed, "lm_eval_config": {k: out["config"].get(k) for k in (
        "random_seed", "numpy_seed", "torch_seed", "fewshot_seed", "gen_kwargs")}, "tasks": {}}
    for p in prepared:
        leaves = p.subtasks or [p.lm_eval_task]
        samples = [s for t in leaves for s in out.get("samples", {}).get(t, [])]
        cfg = out["configs"][leaves[0]]
        metrics = _metrics(results[p.lm_eval_task])
        subtasks = {t: _metrics(results[t]) for t in p.subtasks}
        if p.name == "math":
            logged = {t: out.get("samples", {}).get(t, []) for t in leaves}
            v = math_verify(samples)
            if v is not None:
                metrics[VERIFY_METRIC] = v
            for t in p.subtasks:
                sv = math_verify(logged[t])
                if sv is not None:
                    subtasks[t][VERIFY_METRIC] = sv
        rec["tasks"][p.name] = {
            "metrics": metrics,
            "subtasks": subtasks,
            "num_docs": sum(out["n-samples"][t]["effective"] for t in leaves),
            "generation_kwargs": cfg.get("generation_kwargs"),
            "num_fewshot": cfg.get("num_fewshot"),
            "responses_digest": _digest(samples),
        }
    return rec


def _summarise(per_run: list[dict[str, Any]], prepared: list[PreparedTask], meta: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    flat: dict[str, float] = {}
    flat_std: dict[str, float] = {}
    for p in prepared:
        recs = [r["tasks"][p.name] for r in per_run]
        keys = sorted(set().union(*(r["metrics"] for r in recs)))
        metrics = {k: _spread([r["metrics"].get(k, float("nan")) for r in recs]) for k in keys}
        primary = PRIMARY_METRIC[p.name]
        if primary not in metrics:
            raise DivtuneError(f"lm-eval reported no {primary!r} for {p.name} (got: {', '.join(keys) or 'nothing'})")
        sub_keys = sorted({(t, k) for r in recs for t, m in r["subtasks"].items() for k in m})
        subtasks: dict[str, dict[str, Any]] = {}
        for t, k in sub_keys:
            subtasks.setdefault(t, {})[k] = _spread([r["subtasks"].get(t, {}).get(k, float("nan")) for r in recs])
        tasks[p.name] = {
            "metric": primary, **metrics[primary], "metrics": metrics, "subtasks": subtasks,
            "lm_eval_task": p.lm_eval_task, "num_docs": recs[0]["num_docs"], "num_fewshot": p.num_fewshot,
            "subjects": p.subjects, "generation_kwargs": recs[0]["generation_kwargs"],
            "responses_digests": [r["responses_digest"] for r in recs],
        }
        flat[f"bench.{p.name}"] = metrics[primary]["mean"]
        flat_std[f"bench.{p.name}"] = metrics[primary]["std"]
        for name, (task, key) in EXTRA_METRICS.items():
            if task == p.name and key in metrics:
                flat[name], flat_std[name] = metrics[key]["mean"], metrics[key]["std"]
    return {**meta, "metrics": flat, "metrics_std": flat_std, "results": tasks,
            "per_run": [{"seed": r["seed"], "lm_eval_config": r["lm_eval_config"]} for r in per_run]}


def format_table(res: dict[str, Any]) -> str:
    """One line per benchmark: mean ± std over the runs."""
    lines = [f"{'benchmark':<10} {'metric':<30} {'mean':>7} {'std':>7}  docs  runs"]
    for name, r in res["results"].items():
        lines.append(f"{name:<10} {r['metric']:<30} {r['mean']:>7.4f} {r['std']:>7.4f}  {r['num_docs']:>4}  "
                     f"{len(r['values']):>4}")
        for flat, (task, key) in EXTRA_METRICS.items():
            m = r["metrics"].get(key) if task == name else None
            if m:
                lines.append(f"{name:<10} {key:<30} {m['mean']:>7.4f} {m['std']:>7.4f}  {r['num_docs']:>4}  "
                             f"{len(m['values']):>4}")
    return "\n".join(lines)
