"""The ``divtune`` command line: one subcommand per stage, plus the whole pipeline.

Bad input of any kind (unknown preset, malformed config, missing file, nonexistent model path)
prints one line ``divtune: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line


# --------------------------------------------------------------------------------------
# helpers (the pipeline-side commands use config_args / load_args_config too)
# --------------------------------------------------------------------------------------


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, help="a preset from configs/ (default: toy)")
    p.add_argument("--config", default=None, help="a YAML config file (may name its own preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.max_steps=20 (repeatable); see docs/config.md")


def load_args_config(args: argparse.Namespace):
    from divtune.config import config_from_yaml_text, load_config

    env_name = getattr(args, "config_json_env", None)
    if env_name:  # a whole config in one environment variable (TrainJob pods)
        if not os.environ.get(env_name):
            raise DivtuneError(f"--config-json-env: environment variable {env_name} is empty or unset")
        return config_from_yaml_text(os.environ[env_name])
    preset = args.preset if (args.preset or args.config) else "toy"
    return load_config(preset, args.config, args.overrides)


def _print_json(data: Any, out: str | None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


# --------------------------------------------------------------------------------------
# commands: each parses nothing and decides nothing; the library does the work
# --------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import time

    from divtune.serve.server import curl_example, running_server

    with running_server(args.model, backend=args.backend, host=args.host, port=args.port,
                        timeout=args.timeout) as (base, model_id):
        print(f"serving {args.model} at {base}/v1 (model id: {model_id}); Ctrl-C stops it", flush=True)
        print("diverse sampling, n completions in one request:\n  " + curl_example(base, model_id), flush=True)
        while True:
            time.sleep(3600)


def cmd_bootstrap_model(args: argparse.Namespace) -> int:
    from divtune.models.toy import ensure_toy_model, is_cached

    load_args_config(args)  # a bad --preset/--config/--set is one line, as everywhere
    hit = is_cached() and not args.force
    path = ensure_toy_model(force=args.force)
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
    from divtune.data.synthesize import synthesize_file

    cats = args.categories.split(",") if args.categories else None
    print(synthesize_file(args.task, args.output, num=args.num, seed=args.seed, categories=cats,
                          min_len=args.min_len, max_len=args.max_len))
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
    from divtune.train.trainer import train_from_config

    cfg = load_args_config(args)
    if args.method:
        cfg.train.method = args.method
    res, base = train_from_config(cfg.validate(), args.data, args.output, base=args.base,
                                  checkpoints=args.checkpoints)
    print(json.dumps({"adapter": str(res.adapter_dir), "global_step": res.global_step,
                      "resumed_from": res.resumed_from, "base": str(base)}, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from divtune.models.merge import merge_lora

    print(json.dumps(merge_lora(args.base, args.adapter, args.output), indent=2, sort_keys=True))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.suite == "benchmarks":
        return _evaluate_benchmarks(args)
    from divtune.evaluate import standalone

    fields = {f.name for f in dataclasses.fields(standalone.SuiteRequest)}
    res, line = standalone.run(standalone.SuiteRequest(**{k: v for k, v in vars(args).items() if k in fields}))
    _print_json(res, args.output)
    print(line, file=sys.stderr)
    return 0


def _evaluate_benchmarks(args: argparse.Namespace) -> int:
    """GSM8K / MATH / MMLU-Pro / HumanEval through lm-eval on local or S3 data; mean and std over --runs."""
    from divtune.evaluate.benchmarks import format_table, run_benchmarks
    from divtune.evaluate.standalone import DEFAULTS

    temperature = DEFAULTS["benchmarks"]["temperature"] if args.temperature is None else args.temperature
    res = run_benchmarks(model=args.model, endpoint=args.endpoint, data=args.data, tasks=args.tasks, runs=args.runs,
                         temperature=temperature, allow_code_execution=args.allow_code_execution,
                         limit=args.limit, seed=args.seed, num_fewshot=args.num_fewshot,
                         max_gen_toks=args.max_gen_toks, batch_size=args.batch_size,
                         apply_chat_template=args.chat_template)
    _print_json(res, args.output)
    print(format_table(res), file=sys.stderr)
    return 0


def _registry_name(args: argparse.Namespace) -> str:
    """``--name``, or the registered model of the preset/config given (default: the toy preset's)."""
    return args.name or load_args_config(args).registry.model_name


def cmd_registry(args: argparse.Namespace) -> int:
    from divtune.promotion.promote import version_table

    print(version_table(_registry_name(args)))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from divtune.registry import models as reg

    res = reg.rollback(_registry_name(args))
    print(f"{res['registered_model']}: champion v{res['demoted']} -> v{res['champion']} (rolled back)")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    from divtune import repro

    cfg = load_args_config(args)
    if args.experiment == "darling":
        out = repro.darling(cfg, samples=args.samples, work_dir=args.work_dir)
    else:
        out = repro.uniformity(cfg, repro.parse_methods(args.methods), samples=args.samples, work_dir=args.work_dir)
    print()
    print(out["table"])
    if out["models"]:
        print("\ntrained models (divtune evaluate lists --model DIR --lists FILE): " + ", ".join(out["models"].values()))
    print(f"result recorded in {out['result']} (make results renders docs/results.md)")
    return 0


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="divtune", description="Post-train LLMs for output diversity, and gate them.")
    sub = p.add_subparsers(dest="command", required=True)

    sv = sub.add_parser("serve", help="serve a model over the OpenAI API (vLLM on GPU, transformers serve on CPU)")
    sv.add_argument("--model", required=True, help="model directory or models:/NAME@alias")
    sv.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the health check")
    sv.set_defaults(func=cmd_serve)

    b = sub.add_parser("bootstrap-model", help="build the toy base model (content-hash cached)")
    config_args(b)
    b.add_argument("-o", "--output", default=None, help="also copy it here")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.set_defaults(func=cmd_bootstrap_model)

    s = sub.add_parser("synthesize", help="write a training dataset")
    s.add_argument("task", choices=["lists", "math", "pairs"])
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--num", type=int, default=2000)
    s.add_argument("--categories", default=None, help="comma-separated training categories")
    s.add_argument("--min-len", type=int, default=4)
    s.add_argument("--max-len", type=int, default=12)
    s.set_defaults(func=cmd_synthesize)

    t = sub.add_parser("train", help="post-train a LoRA adapter")
    config_args(t)
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
    e.add_argument("--samples", type=int, default=None, help=f"per prompt (default: {_defaults('samples')})")
    e.add_argument("--temperature", type=float, default=None, help=f"default: {_defaults('temperature')}")
    e.add_argument("--max-new-tokens", type=int, default=None, help=f"default: {_defaults('max_new_tokens')}")
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
    config_args(rp)
    rp.add_argument("--methods", default="base,sft,grpo,gapo")
    rp.add_argument("--samples", type=int, default=None, help="samples per held-out list (default: the preset's)")
    rp.add_argument("--work-dir", default=None)
    rp.set_defaults(func=cmd_repro)

    g = sub.add_parser("registry", help="inspect the model registry")
    gs = g.add_subparsers(dest="action", required=True)
    show = gs.add_parser("show", help="versions with aliases, decisions and key metrics")
    rb = gs.add_parser("rollback", help="move champion back to the version it replaced")
    for q, func in ((show, cmd_registry), (rb, cmd_rollback)):
        q.add_argument("--name", default=None, help="registered model (default: the preset's registry.model_name)")
        config_args(q)
        q.set_defaults(func=func)
    for ep in entry_points(group="divtune.commands"):  # the KFP commands (run, compile, schedule): pipeline side
        ep.load()(sub)
    return p


def _defaults(key: str) -> str:
    """A flag's per-suite defaults, for its help text (from the one table in divtune.evaluate.standalone)."""
    from divtune.evaluate.standalone import DEFAULTS

    return ", ".join(f"{suite} {d[key]}" for suite, d in DEFAULTS.items())


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
    except Exception as exc:  # noqa: BLE001 - a tracking server that failed after MLflow's own retries: one line
        from divtune.registry.tracking import TrackingError, tracking_failure

        err = exc if isinstance(exc, TrackingError) else tracking_failure(exc)
        if err is None:
            raise
        print(f"divtune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
