"""The ``divtune`` command line: one subcommand per stage, plus the whole pipeline.

Bad input of any kind (unknown preset, malformed config, missing file, nonexistent model path)
prints one line ``divtune: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, help="a preset from configs/ (default: toy)")
    p.add_argument("--config", default=None, help="a YAML config file (may name its own preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=20 (repeatable)")


def _load(args: argparse.Namespace):
    from divtune.config import config_from_yaml_text, load_config

    env_name = getattr(args, "config_json_env", None)
    if env_name:  # a whole config in one environment variable (TrainJob pods)
        if not os.environ.get(env_name):
            raise DivtuneError(f"--config-json-env: environment variable {env_name} is empty or unset")
        return config_from_yaml_text(os.environ[env_name])
    preset = args.preset if (args.preset or args.config) else "toy"
    return load_config(preset, args.config, args.overrides)


def _preflight(cfg) -> None:
    """Catch bad input before any process starts or anything is registered."""
    from divtune.train.models import check_model_dir

    if cfg.model.source == "path":
        check_model_dir(cfg.model.path)
    if cfg.gate.policy:
        from divtune.registry.gate import load_policy

        load_policy(cfg.gate.policy)
    if cfg.train.method == "darling":  # required paths (classifier, reward model) set, before anything starts
        from divtune.rewards.darling import check_darling_config

        check_darling_config(cfg.train.darling, local_paths=False)  # they may be the cluster's paths
    d = cfg.data
    if d.path is None and d.task == "lists":
        from divtune.data.lists import synthesize_lists

        synthesize_lists(1, d.seed, d.categories, d.min_len, d.max_len)
    elif d.path is None and d.task != "math":
        raise DivtuneError(f"data.task {d.task!r} is not synthesized: set data.path to a dataset file (local or s3://)")
    elif d.path is not None and not d.path.startswith("s3://"):
        from divtune.data.dataset import training_rows

        training_rows(d.task, d.path)


def _check_bucket(uri: str, endpoint_url: str | None) -> None:
    """The bucket of ``storage.models_uri`` exists and answers (after boto3's retries), or one line."""
    from divtune import storage

    storage.require_bucket(uri, f"storage.models_uri {uri}", endpoint_url=endpoint_url)


def _print_json(data: Any, out: str | None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _preflight(cfg)
    if args.kfp_host:
        from pipelines.remote import submit

        print(submit(cfg, args.kfp_host, run_key=args.run_key))
        return 0
    from divtune import stages
    from divtune.registry import tracking
    from pipelines.local import run_local

    tracking.setup()
    tracking.experiment_id(cfg.registry.experiment)  # a stopped tracking server: one line naming it, before any step
    if cfg.storage.models_uri:  # a missing bucket is found now, not at the merge step after training
        _check_bucket(cfg.storage.models_uri, cfg.storage.endpoint_url)
    try:
        key = run_local(cfg, args.run_key, enable_caching=args.cache)
    except RuntimeError as exc:
        import re

        msg = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(exc).split()))  # kfp.local colours its messages
        raise DivtuneError(f"pipeline failed: {msg[:300]}") from None
    run = tracking.find_pipeline_run(cfg.registry.experiment, key)
    summary = tracking.client().download_artifacts(run.info.run_id, "summary.json")
    data = json.loads(Path(summary).read_text())
    print(stages.format_summary(data))
    prep = tracking.find_stage_run(cfg.registry.experiment, key, "prepare_base")
    if prep is not None and "base_model" in prep.data.params:
        hit = prep.data.params.get("base_cache_hit")
        note = {"True": " (cached, reused)", "False": " (built by this run, now cached)"}.get(hit, "")
        print(f"  base model: {prep.data.params['base_model']}{note}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from divtune.cron import validate_cron

    expr = validate_cron(args.cron)  # a malformed cron never reaches the cluster
    cfg = _load(args)
    _preflight(cfg)
    from pipelines.remote import schedule

    rid = schedule(cfg, args.kfp_host, expr, name=args.name, max_concurrency=args.max_concurrency)
    print(f"recurring run {rid}: {cfg.name} on '{expr}' at {args.kfp_host}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from divtune.serve.server import curl_example, running_server

    with running_server(args.model, backend=args.backend, host=args.host, port=args.port,
                        timeout=args.timeout) as (base, model_id):
        print(f"serving {args.model} at {base}/v1 (model id: {model_id}); Ctrl-C stops it", flush=True)
        print("diverse sampling, n completions in one request:\n  " + curl_example(base, model_id), flush=True)
        import time

        while True:
            time.sleep(3600)


def cmd_compile(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from pipelines.local import compile_pipeline

    p = compile_pipeline(cfg, args.output)
    print(f"wrote {p}")
    return 0


def cmd_bootstrap_model(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from divtune.train.toy_model import cache_dir, ensure_toy_model

    hit = (cache_dir(cfg.model.toy) / "divtune_toy.json").is_file() and not args.force
    path = ensure_toy_model(cfg.model.toy, force=args.force)
    if args.output:
        import shutil

        out = Path(args.output)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(path, out)
        path = out
    print(json.dumps({"path": str(path), "cache_hit": hit, **json.loads((path / "divtune_toy.json").read_text())},
                     indent=2, sort_keys=True))
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from divtune.data.lists import synthesize_lists, write_jsonl

    if args.task in ("pairs", "math"):
        return _synthesize_pairs_or_math(args)
    if args.task != "lists":
        raise DivtuneError(f"synthesize {args.task}: not available yet (lists, pairs, math)")
    cats = args.categories.split(",") if args.categories else None
    ex = synthesize_lists(args.num, args.seed, cats, args.min_len, args.max_len)
    p = write_jsonl(ex, args.output)
    print(f"wrote {len(ex)} records to {p}")
    return 0


def _synthesize_pairs_or_math(args: argparse.Namespace) -> int:
    cats = args.categories.split(",") if args.categories else None
    if args.task == "pairs":
        from divtune.data.pairs import synthesize_pairs, write_pairs

        ex = synthesize_pairs(args.num, args.seed, cats)
        p = write_pairs(ex, args.output)
        print(f"wrote {len(ex)} pairs ({sum(e.label for e in ex)} same, "
              f"{sum(1 - e.label for e in ex)} different) to {p}")
        return 0
    from divtune.data.math import synthesize_arithmetic, write_jsonl

    ex = synthesize_arithmetic(args.num, args.seed)
    print(f"wrote {len(ex)} records to {write_jsonl(ex, args.output)}")
    return 0


def cmd_train_partitioner(args: argparse.Namespace) -> int:
    from divtune.train.partitioner import PartitionerTrainConfig, train_partitioner

    cfg = PartitionerTrainConfig(epochs=args.epochs, eval_fraction=args.eval_fraction, learning_rate=args.lr,
                                 batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    res = train_partitioner(args.data, args.output, base=args.base, config=cfg)
    print(json.dumps({"output_dir": str(res.output_dir), "train_pairs": res.train_pairs,
                      "eval_pairs": res.eval_pairs, **{k: round(v, 4) for k, v in res.metrics.items()},
                      "use_with": f"--set train.darling.partitioner=classifier "
                                  f"--set train.darling.partitioner_path={res.output_dir}"}, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.method:
        cfg.train.method = args.method
    cfg.validate()
    if cfg.train.method == "darling":  # required paths first: before the data, the base model, a download
        from divtune.rewards.darling import check_darling_config

        check_darling_config(cfg.train.darling)
    from divtune.data.dataset import training_rows
    from divtune.train.models import check_model_dir, resolve_base_model
    from divtune.train.trainer import train

    rows = training_rows(cfg.data.task, args.data)
    base = check_model_dir(args.base) if args.base else resolve_base_model(cfg.model)
    ckpt = Path(args.checkpoints) if args.checkpoints else Path(args.output).with_name(Path(args.output).name + "-checkpoints")
    res = train(base, rows, cfg.train, args.output, ckpt, trust_remote_code=cfg.model.trust_remote_code,
                dtype=cfg.model.dtype, system_prompt=cfg.data.system_prompt, few_shot=cfg.data.few_shot)
    print(json.dumps({"adapter": str(res.adapter_dir), "global_step": res.global_step,
                      "resumed_from": res.resumed_from, "base": str(base)}, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from divtune.serve.merge import merge_lora

    print(json.dumps(merge_lora(args.base, args.adapter, args.output), indent=2, sort_keys=True))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from divtune.evaluate.generation import make_generator

    if args.samples is None:  # suite defaults: the paper's 500 answers per open-set category
        args.samples = {"open-set": 500}.get(args.suite, 100)
    if args.max_new_tokens is None:
        args.max_new_tokens = {"creative": 160}.get(args.suite, 32)
    if args.temperature is None:  # benchmarks: the paper's coherence setting
        args.temperature = {"benchmarks": 0.7}.get(args.suite, 1.0)
    if args.suite == "benchmarks":
        return _evaluate_benchmarks(args)
    if args.suite in ("open-set", "creative"):
        return _evaluate_diversity(args)

    if args.suite != "lists":
        raise DivtuneError(f"evaluate {args.suite}: not available yet (only 'lists')")
    from divtune.data.lists import heldout_examples, load_user_lists
    from divtune.evaluate.lists import evaluate_lists

    examples = load_user_lists(args.lists, args.template_id) if args.lists else heldout_examples(args.template_id)
    if args.samples < 1:
        raise DivtuneError(f"--samples must be >= 1, got {args.samples}")
    gen = make_generator(args.model, args.endpoint, batch_size=args.batch_size)
    res = evaluate_lists(gen, examples, samples=args.samples, temperature=args.temperature,
                         max_new_tokens=args.max_new_tokens, seed=args.seed, positional=args.positional,
                         system_prompt=args.system_prompt, few_shot=args.few_shot)
    _print_json(res, args.output)
    print(f"jsd_mean {res['jsd_mean']:.4f}  invalid_rate {res['invalid_rate']:.4f}  ({res['num_lists']} lists x "
          f"{args.samples} samples)", file=sys.stderr)
    return 0


def _evaluate_benchmarks(args: argparse.Namespace) -> int:
    """GSM8K / MATH / MMLU-Pro / HumanEval through lm-eval on local or S3 data; mean and std over --runs."""
    from divtune.evaluate.benchmarks import format_table, run_benchmarks

    res = run_benchmarks(model=args.model, endpoint=args.endpoint, data=args.data, tasks=args.tasks, runs=args.runs,
                         temperature=args.temperature, allow_code_execution=args.allow_code_execution,
                         limit=args.limit, seed=args.seed, num_fewshot=args.num_fewshot,
                         max_gen_toks=args.max_gen_toks, batch_size=args.batch_size,
                         apply_chat_template=args.chat_template)
    _print_json(res, args.output)
    print(format_table(res), file=sys.stderr)
    return 0


def _parse_temperatures(text: str) -> list[float]:
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


def _evaluate_diversity(args: argparse.Namespace) -> int:
    """evaluate open-set | creative: JSON to -o (or stdout), md + PNGs to --out-dir, MLflow unless --no-mlflow."""
    import tempfile

    from divtune.evaluate import plots, report
    from divtune.evaluate.generation import make_generator

    if args.samples < 1:
        raise DivtuneError(f"--samples must be >= 1, got {args.samples}")
    if args.max_new_tokens < 1:
        raise DivtuneError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise DivtuneError(f"--temperature must be >= 0, got {args.temperature}")
    for flag, given in (("--lists", args.lists), ("--positional", args.positional)):
        if given:
            raise DivtuneError(f"{flag} applies to the lists suite, not {args.suite}")
    temps = _parse_temperatures(args.temperatures) if args.temperatures else None
    if temps and args.suite != "creative":
        raise DivtuneError("--temperatures applies to the creative suite only")
    if args.few_shot and args.suite != "open-set":
        raise DivtuneError(f"--few-shot applies to the lists and open-set suites, not {args.suite}")
    common = dict(samples=args.samples, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                  seed=args.seed, system_prompt=args.system_prompt)
    if args.suite == "open-set":
        from divtune.data.open_set import load_prompts_file
        from divtune.evaluate.open_set import evaluate_open_set

        prompts = load_prompts_file(args.prompts) if args.prompts else None
        gen = make_generator(args.model, args.endpoint, batch_size=args.batch_size)
        res = evaluate_open_set(gen, prompts, few_shot=args.few_shot, **common)
        line = (f"unique_at_n {res['unique_at_n']:.2f}  invalid_rate {res['invalid_rate']:.4f}  "
                f"({res['num_categories']} categories x {args.samples} samples)")
    else:
        from divtune.evaluate.creative import (SentenceEmbedder, creativity_coherence_curve, evaluate_creative,
                                               load_prompts_file)

        prompts = load_prompts_file(args.prompts) if args.prompts else None
        embedder = SentenceEmbedder()
        gen = make_generator(args.model, args.endpoint, batch_size=args.batch_size)
        res = evaluate_creative(gen, prompts, embedder=embedder, **common)
        if temps:
            res["coherence_curve"] = creativity_coherence_curve(
                gen, temps, prompts, samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed,
                embedder=embedder, system_prompt=args.system_prompt, known={args.temperature: res})

        def fmt(v):
            return "n/a" if v is None else f"{v:.4f}"

        line = (f"pairwise_cosine_distance {fmt(res['pairwise_cosine_distance'])}  one_minus_self_bleu "
                f"{fmt(res['one_minus_self_bleu'])}  ({res['num_prompts']} prompts x {args.samples} samples)")
    with tempfile.TemporaryDirectory(prefix="divtune-figs-") as tmp:
        pngs = plots.suite_figures(args.suite, res, args.out_dir or tmp)
        md = report.markdown_summary(args.suite, res)
        if args.out_dir:
            report.write_outputs(args.out_dir, args.suite, res, pngs, md)
            print(f"wrote {args.suite}.json, {args.suite}.md and {len(pngs)} PNG(s) to {args.out_dir}", file=sys.stderr)
        if not args.no_mlflow:
            from divtune import paths

            rid = report.log_evaluation(args.suite, res, pngs, md)
            res["mlflow"] = {"run_id": rid, "tracking_uri": paths.tracking_uri(), "experiment": report.EXPERIMENT}
            print(f"MLflow run {rid} ({report.EXPERIMENT}) at {paths.tracking_uri()}", file=sys.stderr)
    _print_json(res, args.output)
    print(line, file=sys.stderr)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from divtune.registry import models as reg
    from divtune.registry import tracking

    reg.require_model(args.name)
    c = tracking.client()
    versions = sorted(c.search_model_versions(f"name = '{args.name}'"), key=lambda v: int(v.version))
    rows = []
    for v in versions:
        t = v.tags
        rows.append({"version": v.version, "aliases": ",".join(v.aliases or []),
                     "decision": t.get("divtune.decision", "?"), "jsd_mean": t.get("divtune.metric.jsd_mean", "-"),
                     "invalid_rate": t.get("divtune.metric.invalid_rate", "-"),
                     "previous_champion": t.get(reg.PREVIOUS_CHAMPION_TAG, "") or "-",
                     "run_key": t.get(reg.RUN_KEY_TAG, "-")})
    print(f"{'version':>7}  {'aliases':<20} {'decision':<8} {'jsd_mean':>8} {'invalid':>8}  prev  run_key")
    for r in rows:
        print(f"{r['version']:>7}  {r['aliases']:<20} {r['decision']:<8} {r['jsd_mean']:>8} {r['invalid_rate']:>8}  "
              f"{r['previous_champion']:>4}  {r['run_key']}")
    lineage = reg.champion_lineage(args.name)
    print("champion lineage: " + (" <- ".join(f"v{v}" for v in lineage) if lineage else "(no champion)"))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from divtune.registry import models as reg

    res = reg.rollback(args.name)
    print(f"{res['registered_model']}: champion v{res['demoted']} -> v{res['champion']} (rolled back)")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.experiment == "darling":
        from divtune.repro import darling

        _print_repro(darling(cfg, samples=args.samples, work_dir=args.work_dir))
        return 0
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in ("base", "sft", "grpo", "gapo")]
    if bad or not methods:
        raise DivtuneError(f"--methods: unknown method {bad[0] if bad else '(none)'!r} (use base, sft, grpo, gapo)")
    from divtune.repro import uniformity

    _print_repro(uniformity(cfg, methods, samples=args.samples, work_dir=args.work_dir))
    return 0


def _print_repro(out: dict) -> None:
    """A repro's markdown table, then the models it trained (for ``divtune evaluate lists``)."""
    print()
    print(out["table"])
    if out["models"]:
        print("\ntrained models (divtune evaluate lists --model DIR --lists FILE): " + ", ".join(out["models"].values()))


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="divtune", description="Post-train LLMs for output diversity, and gate them.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the whole retraining pipeline locally (kfp.local)")
    _config_args(r)
    r.add_argument("--run-key", default=None, help="pipeline run key (default: a fresh one)")
    r.add_argument("--kfp-host", default=None, help="submit to a Kubeflow Pipelines endpoint instead")
    r.add_argument("--cache", action="store_true",
                   help="reuse cached step outputs (KFP caching) when re-running the same --run-key")
    r.set_defaults(func=cmd_run)

    sv = sub.add_parser("serve", help="serve a model over the OpenAI API (vLLM on GPU, transformers serve on CPU)")
    sv.add_argument("--model", required=True, help="model directory or models:/NAME@alias")
    sv.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the health check")
    sv.set_defaults(func=cmd_serve)

    sc = sub.add_parser("schedule", help="create a KFP recurring run (scheduled retraining)")
    _config_args(sc)
    sc.add_argument("--cron", required=True, help="6-field cron, seconds first: '0 0 3 * * *' = daily 03:00")
    sc.add_argument("--kfp-host", required=True, help="Kubeflow Pipelines endpoint URL")
    sc.add_argument("--name", default=None, help="recurring run name")
    sc.add_argument("--max-concurrency", type=int, default=1)
    sc.set_defaults(func=cmd_schedule)

    c = sub.add_parser("compile", help="write the KFP pipeline spec YAML")
    _config_args(c)
    c.add_argument("-o", "--output", default="retrain.yaml")
    c.set_defaults(func=cmd_compile)

    b = sub.add_parser("bootstrap-model", help="build the toy base model (content-hash cached)")
    _config_args(b)
    b.add_argument("-o", "--output", default=None, help="also copy it here")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.set_defaults(func=cmd_bootstrap_model)

    s = sub.add_parser("synthesize", help="write a training dataset")
    s.add_argument("task", choices=["lists", "open-set", "creative", "math", "pairs"])
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--num", type=int, default=2000)
    s.add_argument("--categories", default=None, help="comma-separated training categories")
    s.add_argument("--min-len", type=int, default=4)
    s.add_argument("--max-len", type=int, default=12)
    s.set_defaults(func=cmd_synthesize)

    t = sub.add_parser("train", help="post-train a LoRA adapter")
    _config_args(t)
    t.add_argument("--method", choices=["gapo", "grpo", "darling", "sft"], default=None)
    t.add_argument("--data", required=True, help="training JSONL (divtune synthesize)")
    t.add_argument("--base", default=None, help="base model directory (default: the config's model)")
    t.add_argument("-o", "--output", required=True, help="adapter output directory")
    t.add_argument("--checkpoints", default=None, help="checkpoint directory (resumed if present)")
    t.add_argument("--config-json-env", default=None, help="read the whole config from this environment variable")
    t.set_defaults(func=cmd_train)

    tp = sub.add_parser("train-partitioner", help="fine-tune a same/different pair classifier (DARLING partitioner)")
    tp.add_argument("--data", required=True, help='pairs JSONL: {"text1", "text2", "label": 0|1} (divtune synthesize pairs)')
    tp.add_argument("-o", "--output", required=True, help="output directory (safetensors + tokenizer)")
    tp.add_argument("--base", default=None, help="base checkpoint (default: the packaged all-MiniLM-L6-v2)")
    tp.add_argument("--epochs", type=float, default=3.0)
    tp.add_argument("--eval-fraction", type=float, default=0.2, help="held-out share for accuracy / F1")
    tp.add_argument("--lr", type=float, default=1e-4)
    tp.add_argument("--batch-size", type=int, default=32)
    tp.add_argument("--max-length", type=int, default=128)
    tp.add_argument("--seed", type=int, default=0)
    tp.set_defaults(func=cmd_train_partitioner)

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base (safetensors)")
    m.add_argument("--base", required=True)
    m.add_argument("--adapter", required=True)
    m.add_argument("-o", "--output", required=True)
    m.set_defaults(func=cmd_merge)

    e = sub.add_parser("evaluate", help="diversity evaluation of a model or endpoint")
    e.add_argument("suite", choices=["lists", "open-set", "creative", "benchmarks"])
    e.add_argument("--model", default=None, help="model directory or models:/NAME@alias")
    e.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL")
    e.add_argument("--lists", default=None, help="JSON file: a list of lists of strings")
    e.add_argument("--samples", type=int, default=None, help="per prompt (default: open-set 500, else 100)")
    e.add_argument("--temperature", type=float, default=None, help="default: benchmarks 0.7, else 1.0")
    e.add_argument("--max-new-tokens", type=int, default=None, help="default: creative 160, else 32")
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--template-id", type=int, default=0)
    e.add_argument("--system-prompt", default=None, help="chat system message (match the model's training)")
    e.add_argument("--few-shot", type=int, default=0, choices=[0, 1, 2, 3], help="worked <answer> examples")
    e.add_argument("--positional", action="store_true", help="also measure positional bias (shuffled lists)")
    e.add_argument("--prompts", default=None,
                   help="open-set/creative: JSON list of prompt strings or of {category, prompt} objects")
    e.add_argument("--temperatures", default=None,
                   help="creative: also the creativity-coherence curve at these temperatures, e.g. 0.5,0.7,1.0,1.3")
    e.add_argument("--out-dir", default=None, help="open-set/creative: write <suite>.json, <suite>.md and PNGs here")
    e.add_argument("--no-mlflow", action="store_true", help="open-set/creative: do not log to MLflow")
    e.add_argument("--data", default=None,
                   help="benchmarks: DIR or s3://bucket/prefix holding gsm8k/test.jsonl (+train.jsonl), "
                        "math/test.jsonl, mmlu_pro/test.jsonl (+validation.jsonl), humaneval/test.jsonl")
    e.add_argument("--tasks", default="gsm8k,math,mmlu_pro,humaneval", help="benchmarks: comma-separated subset")
    e.add_argument("--runs", type=int, default=5, help="benchmarks: runs with seeds --seed, --seed+1, ... (mean, std)")
    e.add_argument("--allow-code-execution", action="store_true",
                   help="benchmarks: run model-written code (humaneval) in a sandboxed, time-limited subprocess")
    e.add_argument("--limit", type=int, default=None, help="benchmarks: at most N examples per benchmark (smoke runs)")
    e.add_argument("--num-fewshot", type=int, default=None,
                   help="benchmarks: few-shot examples for gsm8k and mmlu_pro (default: lm-eval's 5)")
    e.add_argument("--max-gen-toks", type=int, default=None,
                   help="benchmarks: cap on generated tokens per answer (default: each task's own)")
    e.add_argument("--chat-template", action="store_true",
                   help="benchmarks: apply the chat template (endpoints: chat completions instead of completions)")
    e.add_argument("-o", "--output", default=None)
    e.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("repro", help="reproduce a paper comparison on a preset")
    rp.add_argument("experiment", choices=["uniformity", "darling"])
    _config_args(rp)
    rp.add_argument("--methods", default="base,sft,grpo,gapo")
    rp.add_argument("--samples", type=int, default=None, help="samples per held-out list (default: the preset's)")
    rp.add_argument("--work-dir", default=None)
    rp.set_defaults(func=cmd_repro)

    g = sub.add_parser("registry", help="inspect the model registry")
    gs = g.add_subparsers(dest="action", required=True)
    show = gs.add_parser("show", help="versions with aliases, decisions and key metrics")
    show.add_argument("--name", default="divtune-toy-gapo")
    show.set_defaults(func=cmd_registry)
    rb = gs.add_parser("rollback", help="move champion back to the version it replaced")
    rb.add_argument("--name", default="divtune-toy-gapo")
    rb.set_defaults(func=cmd_rollback)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DivtuneError as exc:
        print(f"divtune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("divtune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - tracking-server failures (after MLflow's own retries): one line
        if type(exc).__module__.startswith(("mlflow", "requests", "urllib3")):
            from divtune import paths

            msg = " ".join(str(exc).split())[:300]
            print(f"divtune: error: MLflow at {paths.tracking_uri()} failed: {msg}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
