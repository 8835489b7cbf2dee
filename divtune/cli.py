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
from divtune.files import limit
from divtune.flags import count, number, text, url


# --------------------------------------------------------------------------------------
# helpers (the pipeline-side commands use config_args / load_args_config too)
# --------------------------------------------------------------------------------------


def config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, type=text("a preset name"), help="a preset from configs/ (default: toy)")
    p.add_argument("--config", default=None, type=text("a config file"), help="a YAML config file (may name its own preset)")
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
    """JSON (no NaN: not JSON) to ``out``, written atomically, or to stdout."""
    from divtune.outputs import write_text

    body = json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False)
    if out:
        write_text(out, body + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(body)


# --------------------------------------------------------------------------------------
# commands: each parses nothing and decides nothing; the library does the work
# --------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import time

    from divtune.serve.server import curl_example, default_log_file, running_server

    log = args.log or str(default_log_file(args.host, args.port))  # a failure to start names it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` / a pod stop: the model server stops too
    with running_server(args.model, backend=args.backend, host=args.host, port=args.port,
                        timeout=args.timeout, log_file=log) as (base, model_id):
        print(f"serving {args.model} at {base}/v1 (model id: {model_id}); Ctrl-C stops it", flush=True)
        print(f"server log: {log}", flush=True)
        print("diverse sampling, n completions in one request:\n  " + curl_example(base, model_id), flush=True)
        while True:
            time.sleep(3600)


def cmd_bootstrap_model(args: argparse.Namespace) -> int:
    from divtune.models.toy import ensure_toy_model, is_cached

    from divtune import outputs

    load_args_config(args)  # a bad --preset/--config/--set is one line, as everywhere
    if args.output:
        outputs.check_output_dir(args.output, force=args.force)  # before the build: nothing replaced in vain
    hit = is_cached() and not args.force
    path = ensure_toy_model(force=args.force)
    if args.output:
        import shutil

        with outputs.output_dir(args.output, command="bootstrap-model", force=args.force) as tmp:
            shutil.copytree(path, tmp, dirs_exist_ok=True)
        path = Path(args.output)
    print(json.dumps({"path": str(path), "cache_hit": hit, **json.loads((path / "divtune_toy.json").read_text())},
                     indent=2, sort_keys=True))
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from divtune.data.synthesize import synthesize_file
    from divtune.outputs import check_output_file

    check_output_file(args.output)
    cats = [c.strip() for c in args.categories.split(",")] if args.categories else None
    if cats is not None and not all(cats):
        raise DivtuneError(f"--categories {args.categories!r:.80}: an empty category name")
    print(synthesize_file(args.task, args.output, num=args.num, seed=args.seed, categories=cats,
                          min_len=args.min_len, max_len=args.max_len))
    return 0


def cmd_train_partitioner(args: argparse.Namespace) -> int:
    from divtune.outputs import check_output_dir
    from divtune.train.partitioner import PartitionerTrainConfig, train_partitioner

    check_output_dir(args.output, force=args.force)
    cfg = PartitionerTrainConfig(epochs=args.epochs, eval_fraction=args.eval_fraction, learning_rate=args.lr,
                                 batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)
    res = train_partitioner(args.data, args.output, base=args.base, config=cfg)
    print(json.dumps({"output_dir": str(res.output_dir), "train_pairs": res.train_pairs,
                      "eval_pairs": res.eval_pairs, **{k: round(v, 4) for k, v in res.metrics.items()},
                      "use_with": f"--set train.darling.partitioner=classifier "
                                  f"--set train.darling.partitioner_path={res.output_dir}"}, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from divtune.train.trainer import is_main_rank, mlflow_run_from_env, train_from_config

    cfg = load_args_config(args)
    if args.method:
        cfg.train.method = args.method
    with mlflow_run_from_env():  # a TrainJob: rank 0 logs every step into the train stage's run (MLFLOW_RUN_ID)
        res, base = train_from_config(cfg.validate(), args.data, args.output, base=args.base,
                                      checkpoints=args.checkpoints, force=args.force)
    if is_main_rank():  # torchrun: one summary, not one per process
        print(json.dumps({"adapter": str(res.adapter_dir), "global_step": res.global_step,
                          "resumed_from": res.resumed_from, "base": str(base)}, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from divtune.models.merge import merge_lora
    from divtune.outputs import check_output_dir

    check_output_dir(args.output, force=args.force)
    print(json.dumps(merge_lora(args.base, args.adapter, args.output), indent=2, sort_keys=True))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from divtune import outputs

    if args.output:  # before the evaluation: a bad -o must not cost the results
        outputs.check_output_file(args.output)
    if args.out_dir:
        outputs.check_output_dir(args.out_dir, force=args.force, flag="--out-dir")
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

    for flag, off in (("top_p", 1.0), ("top_k", 0), ("min_p", 0.0), ("repetition_penalty", 1.0),
                      ("backend", "auto"), ("server", "auto")):
        if getattr(args, flag) != off:
            raise DivtuneError(f"--{flag.replace('_', '-')} does not apply to benchmarks (lm-eval loads the model "
                               "and samples with its tasks' settings)")
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

    name = _registry_name(args)
    res = reg.rollback(name)
    print(f"{res['registered_model']}: champion v{res['demoted']} -> v{res['champion']} (rolled back)")
    if args.deploy:  # traffic follows the alias: the previous champion's InferenceService, applied
        from divtune.serve.deploy import deploy

        out = deploy(f"models:/{name}@champion", name=args.isvc_name, namespace=args.namespace)
        print(f"{out['inferenceservice']}: serving v{out['version']} from {out['storage_uri']}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from divtune.serve import deploy as dep

    args.model = args.model or f"models:/{load_args_config(args).registry.model_name}@champion"
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(dep.render(args.model, name=args.isvc_name, namespace=args.namespace,
                                        canary_percent=args.canary), sort_keys=False), end="")
        return 0
    if not dep.has_kube_credentials():
        raise DivtuneError("deploy needs Kubernetes credentials (a kubeconfig or a pod's service account); "
                           "--dry-run prints the InferenceService instead")
    out = dep.deploy(args.model, name=args.isvc_name, namespace=args.namespace, canary_percent=args.canary,
                     max_invalid_rate=args.max_invalid_rate)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    import getpass

    from divtune.promotion.promote import approve

    res = approve(args.name, args.version, by=args.by or getpass.getuser())
    print(f"{res['registered_model']}: champion -> v{res['champion']} (approved by {res['approved_by']} at "
          f"{res['approved_at']}; previous champion {('v' + res['previous_champion']) if res['previous_champion'] else 'none'})")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    from divtune import repro

    cfg = load_args_config(args)
    if args.experiment == "darling":
        out = repro.darling(cfg, samples=args.samples, work_dir=args.work_dir)
    else:
        methods = repro.parse_methods(args.methods) if args.methods else repro.DEFAULT_METHODS
        out = repro.uniformity(cfg, methods, samples=args.samples, work_dir=args.work_dir)
    print()
    print(out["table"])
    if out["models"]:
        print("\ntrained models (divtune evaluate lists --model DIR --lists FILE): " + ", ".join(out["models"].values()))
    print(f"result recorded in {out['result']} (make results renders docs/results.md)")
    return 0


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one ``divtune: error:`` line naming the command, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        from divtune.errors import short

        where = self.prog.removeprefix("divtune").strip()
        self.exit(2, f"divtune: error: {where + ': ' if where else ''}{short(message, 300, use_repr=False)}\n")


def build_parser() -> argparse.ArgumentParser:
    from divtune.data.templates import TEMPLATES
    p = Parser(prog="divtune", description="Post-train LLMs for output diversity, and gate them.")
    sub = p.add_subparsers(dest="command", required=True)

    sv = sub.add_parser("serve", help="serve a model over the OpenAI API (vLLM on GPU, transformers serve on CPU)")
    sv.add_argument("--model", required=True, type=text("a model directory or models:/NAME@alias"), help="model directory or models:/NAME@alias")
    sv.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    sv.add_argument("--host", default="127.0.0.1", type=text("a host name or address"))
    sv.add_argument("--port", type=count(min=1, max=65535), default=8000)
    sv.add_argument("--timeout", type=number(gt=0, max=86400), default=600.0, help="seconds to wait for the health check")
    sv.add_argument("--log", default=None, type=text("a log file"),
                    help="the server's output (default: $DIVTUNE_HOME/logs/serve-HOST-PORT.log)")
    sv.set_defaults(func=cmd_serve)

    b = sub.add_parser("bootstrap-model", help="build the toy base model (content-hash cached)")
    config_args(b)
    b.add_argument("-o", "--output", default=None, type=text("a directory"), help="also copy it here (a new directory, or one divtune wrote)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached, and replace -o whatever it holds")
    b.set_defaults(func=cmd_bootstrap_model)

    s = sub.add_parser("synthesize", help="write a training dataset")
    s.add_argument("task", choices=["lists", "math", "pairs"])
    s.add_argument("-o", "--output", required=True, type=text("a file"))
    s.add_argument("--seed", type=count(min=0, max=2**32 - 1), default=0)
    s.add_argument("--num", type=count(max=lambda: limit("EXAMPLES")), default=2000, help="records (at most DIVTUNE_MAX_EXAMPLES)")
    s.add_argument("--categories", default=None, type=text("comma-separated categories"), help="comma-separated training categories")
    s.add_argument("--min-len", type=count(min=2, max=lambda: limit("ITEMS")), default=4)
    s.add_argument("--max-len", type=count(min=2, max=lambda: limit("ITEMS")), default=12)
    s.set_defaults(func=cmd_synthesize)

    t = sub.add_parser("train", help="post-train a LoRA adapter")
    config_args(t)
    t.add_argument("--method", choices=["gapo", "grpo", "darling", "sft"], default=None)
    t.add_argument("--data", required=True, type=text("a dataset file"), help="training JSONL (divtune synthesize)")
    t.add_argument("--base", default=None, type=text("a model directory"), help="base model directory (default: the config's model)")
    t.add_argument("-o", "--output", required=True, type=text("a directory"), help="adapter output directory (new, or one divtune wrote)")
    t.add_argument("--force", action="store_true", help="replace -o even if divtune did not write it")
    t.add_argument("--checkpoints", default=None, type=text("a directory"), help="checkpoint directory (resumed if present)")
    t.add_argument("--config-json-env", default=None, type=text("an environment variable name"), help="read the whole config from this environment variable")
    t.set_defaults(func=cmd_train)

    tp = sub.add_parser("train-partitioner", help="fine-tune a same/different pair classifier (DARLING partitioner)")
    tp.add_argument("--data", required=True, type=text("a pairs file"), help='pairs JSONL: {"text1", "text2", "label": 0|1} (divtune synthesize pairs)')
    tp.add_argument("-o", "--output", required=True, type=text("a directory"), help="output directory (safetensors + tokenizer; new, or one divtune wrote)")
    tp.add_argument("--force", action="store_true", help="replace -o even if divtune did not write it")
    tp.add_argument("--base", default=None, type=text("a checkpoint directory"), help="base checkpoint (default: the packaged all-MiniLM-L6-v2)")
    tp.add_argument("--epochs", type=number(gt=0, max=1000), default=3.0)
    tp.add_argument("--eval-fraction", type=number(gt=0, max=1, max_exclusive=True), default=0.2, help="held-out share for accuracy / F1")
    tp.add_argument("--lr", type=number(gt=0, max=1), default=1e-4)
    tp.add_argument("--batch-size", type=count(max=4096), default=32)
    tp.add_argument("--max-length", type=count(min=8, max=65536), default=128)
    tp.add_argument("--seed", type=count(min=0, max=2**32 - 1), default=0)
    tp.set_defaults(func=cmd_train_partitioner)

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base (safetensors)")
    m.add_argument("--base", required=True, type=text("a model directory"))
    m.add_argument("--adapter", required=True, type=text("an adapter directory"))
    m.add_argument("-o", "--output", required=True, type=text("a directory"), help="merged model directory (new, or one divtune wrote)")
    m.add_argument("--force", action="store_true", help="replace -o even if divtune did not write it")
    m.set_defaults(func=cmd_merge)

    e = sub.add_parser("evaluate", help="diversity evaluation of a model or endpoint")
    e.add_argument("suite", choices=["lists", "open-set", "creative", "benchmarks", "novelty"])
    e.add_argument("--model", default=None, type=text("a model directory or models:/NAME@alias"), help="model directory or models:/NAME@alias")
    e.add_argument("--endpoint", default=None, type=url(), help="OpenAI-compatible base URL")
    e.add_argument("--timeout", type=number(gt=0, max=3600), default=120.0, help="--endpoint: seconds to wait for one answer")
    e.add_argument("--lists", default=None, type=text("a lists file"), help="JSON file: a list of lists of strings")
    e.add_argument("--samples", type=count(max=lambda: limit("SAMPLES")), default=None,
                   help=f"per prompt (default: {_defaults('samples')}; at most DIVTUNE_MAX_SAMPLES)")
    e.add_argument("--temperature", type=number(min=0, max=100), default=None,
                   help=f"0 decodes greedily (default: {_defaults('temperature')})")
    e.add_argument("--top-p", type=number(gt=0, max=1), default=1.0, help="lists: nucleus threshold (1: off)")
    e.add_argument("--top-k", type=count(min=0, max=1_000_000), default=0, help="lists: top-k cut-off (0: off)")
    e.add_argument("--min-p", type=number(min=0, max=1), default=0.0,
                   help="lists: min-p threshold (0: off; the GAPO paper's baselines: 0.05, 0.1)")
    e.add_argument("--repetition-penalty", type=number(gt=0, max=100), default=1.0,
                   help="lists: repetition penalty (1: none); sent explicitly, never the model's default")
    e.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"],
                   help="--model: vLLM offline on a GPU with vLLM installed, else in-process transformers (auto)")
    e.add_argument("--server", default="auto", choices=["auto", "vllm", "transformers"],
                   help="--endpoint: how to send top_k/min_p/repetition_penalty (auto: probe the server)")
    e.add_argument("--max-new-tokens", type=count(max=lambda: limit("NEW_TOKENS")), default=None,
                   help=f"default: {_defaults('max_new_tokens')}")
    e.add_argument("--batch-size", type=count(max=4096), default=100)
    e.add_argument("--seed", type=count(min=0, max=2**31 - 1), default=1234)
    e.add_argument("--template-id", type=count(min=0, max=len(TEMPLATES) - 1), default=0)
    e.add_argument("--system-prompt", default=None, help="chat system message (match the model's training)")
    e.add_argument("--few-shot", type=int, default=0, choices=[0, 1, 2, 3], help="worked <answer> examples")
    e.add_argument("--positional", action="store_true", help="also measure positional bias (shuffled lists)")
    e.add_argument("--prompts", default=None,
                   help="open-set/creative: JSON list of prompt strings or of {category, prompt} objects; "
                        "novelty: JSONL, one {\"prompt\": ...} object a line (the NB-Curated shape)")
    e.add_argument("--paper-prompts", action="store_true",
                   help="open-set: the GAPO paper's plain wording (\"Name one city anywhere in the world\"), no "
                        "<answer> format line; Unique@N is reported on exact stripped strings and normalised")
    e.add_argument("--partitioner", default=None, choices=["exact", "embedding", "classifier"],
                   help="novelty: how generations are split into classes (default: embedding, packaged MiniLM)")
    e.add_argument("--partitioner-path", default=None, type=text("a partitioner directory"),
                   help="novelty: the embedding model or pair classifier (DIR or s3://); required by classifier")
    e.add_argument("--threshold", type=number(min=0, max=1), default=None,
                   help="novelty: similarity threshold (default: embedding 0.8 cosine, classifier 0.5)")
    e.add_argument("--quality", default=None, choices=["reward_model", "math", "list_validity", "none"],
                   help="novelty: quality behind utility_k (default: reward_model with --reward-model, else none)")
    e.add_argument("--reward-model", default=None, type=text("a reward model directory"),
                   help="novelty: a *ForSequenceClassification reward model (DIR or s3://)")
    e.add_argument("--reward-scale", default=None, choices=["raw", "novelty-bench"],
                   help="novelty: raw reward, or NoveltyBench's 1..10 cutoffs (fitted to Skywork-Reward-Gemma-2-27B)")
    e.add_argument("--patience", type=number(gt=0, max=1), default=None,
                   help="novelty: utility_k's patience (default 0.8, NoveltyBench's)")
    e.add_argument("--temperatures", default=None,
                   help="creative: also the creativity-coherence curve at these temperatures, e.g. 0.5,0.7,1.0,1.3")
    e.add_argument("--out-dir", default=None, type=text("a directory"),
                   help="open-set/creative/novelty: write <suite>.json, <suite>.md and PNGs here (new, or one divtune wrote)")
    e.add_argument("--force", action="store_true", help="replace --out-dir even if divtune did not write it")
    e.add_argument("--no-mlflow", action="store_true", help="open-set/creative/novelty: do not log to MLflow")
    e.add_argument("--data", default=None,
                   help="benchmarks: DIR or s3://bucket/prefix holding gsm8k/test.jsonl (+train.jsonl), "
                        "math/test.jsonl, mmlu_pro/test.jsonl (+validation.jsonl), humaneval/test.jsonl")
    e.add_argument("--tasks", default="gsm8k,math,mmlu_pro,humaneval", help="benchmarks: comma-separated subset")
    e.add_argument("--runs", type=count(max=100), default=5, help="benchmarks: runs with seeds --seed, --seed+1, ... (mean, std)")
    e.add_argument("--allow-code-execution", action="store_true",
                   help="benchmarks: run model-written code (humaneval) in a sandboxed, time-limited subprocess")
    e.add_argument("--limit", type=count(max=lambda: limit("EXAMPLES")), default=None, help="benchmarks: at most N examples per benchmark (smoke runs)")
    e.add_argument("--num-fewshot", type=count(min=0, max=25), default=None,
                   help="benchmarks: few-shot examples for gsm8k and mmlu_pro (default: lm-eval's 5)")
    e.add_argument("--max-gen-toks", type=count(max=lambda: limit("NEW_TOKENS")), default=None,
                   help="benchmarks: cap on generated tokens per answer (default: each task's own)")
    e.add_argument("--chat-template", action="store_true",
                   help="benchmarks: apply the chat template (endpoints: chat completions instead of completions)")
    e.add_argument("-o", "--output", default=None, type=text("a file"), help="write the result JSON here")
    e.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("repro", help="reproduce a paper comparison on a preset")
    rp.add_argument("experiment", choices=["uniformity", "darling"])
    config_args(rp)
    rp.add_argument("--methods", default=None, type=text("comma-separated methods"),
                    help="uniformity: base, the no-training baselines minp-0.05, minp-0.1, temperature (a sweep), "
                         "verbalized, and the trained sft, grpo, gapo (default: all, in that order)")
    rp.add_argument("--samples", type=count(max=lambda: limit("SAMPLES")), default=None, help="samples per held-out list (default: the preset's)")
    rp.add_argument("--work-dir", default=None, type=text("a directory"), help="where the trained models go (new, or one divtune wrote)")
    rp.set_defaults(func=cmd_repro)

    d = sub.add_parser("deploy", help="serve a registered version: its KServe InferenceService, applied")
    d.add_argument("--model", default=None, type=text("models:/NAME@alias or models:/NAME/VERSION"),
                   help="the version to serve (default: models:/<the preset's registry.model_name>@champion)")
    config_args(d)
    d.add_argument("--isvc-name", default=None, type=text("an InferenceService name"),
                   help="InferenceService name (default: the template's)")
    d.add_argument("--namespace", default=None, type=text("a namespace"), help="default: the template's")
    d.add_argument("--canary", type=count(min=1, max=99), default=None,
                   help="percent of traffic for the new version first; 100 %% after a check of the live endpoint")
    d.add_argument("--max-invalid-rate", type=number(min=0, max=1), default=0.2,
                   help="the canary check: highest invalid-answer rate on held-out lists")
    d.add_argument("--dry-run", action="store_true", help="print the InferenceService, apply nothing")
    d.set_defaults(func=cmd_deploy)

    g = sub.add_parser("registry", help="inspect the model registry")
    gs = g.add_subparsers(dest="action", required=True)
    show = gs.add_parser("show", help="versions with aliases, decisions and key metrics")
    rb = gs.add_parser("rollback", help="move champion back to the version it replaced")
    for q, func in ((show, cmd_registry), (rb, cmd_rollback)):
        q.add_argument("--name", default=None, type=text("a registered model name"), help="registered model (default: the preset's registry.model_name)")
        config_args(q)
        q.set_defaults(func=func)
    rb.add_argument("--deploy", action="store_true", help="also apply the previous champion's InferenceService")
    for q in (rb,):
        q.add_argument("--isvc-name", default=None, type=text("an InferenceService name"),
                       help="InferenceService name (default: the template's)")
        q.add_argument("--namespace", default=None, type=text("a namespace"), help="default: the template's")
    ap = gs.add_parser("approve", help="make the challenger that passed a manual-approval gate the champion")
    ap.add_argument("name", type=text("a registered model name"))
    ap.add_argument("version", type=text("a version number"))
    ap.add_argument("--by", type=text("who approves"), default=None, help="who approves (default: $USER)")
    ap.set_defaults(func=cmd_approve)
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
