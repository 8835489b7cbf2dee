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
    from divtune.data.lists import synthesize_lists

    synthesize_lists(1, cfg.data.seed, cfg.data.categories, cfg.data.min_len, cfg.data.max_len)


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
    try:
        key = run_local(cfg, args.run_key, enable_caching=args.cache)
    except RuntimeError as exc:
        raise DivtuneError(f"pipeline failed: {' '.join(str(exc).split())[:300]}") from None
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

    if args.task != "lists":
        raise DivtuneError(f"synthesize {args.task}: not available yet (only 'lists')")
    cats = args.categories.split(",") if args.categories else None
    ex = synthesize_lists(args.num, args.seed, cats, args.min_len, args.max_len)
    p = write_jsonl(ex, args.output)
    print(f"wrote {len(ex)} records to {p}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if args.method:
        cfg.train.method = args.method
    cfg.validate()
    from divtune.data.lists import read_jsonl
    from divtune.train.models import check_model_dir, resolve_base_model
    from divtune.train.trainer import train

    rows = [e.to_row() for e in read_jsonl(args.data)]
    base = check_model_dir(args.base) if args.base else resolve_base_model(cfg.model)
    ckpt = Path(args.checkpoints) if args.checkpoints else Path(args.output).with_name(Path(args.output).name + "-checkpoints")
    res = train(base, rows, cfg.train, args.output, ckpt, trust_remote_code=cfg.model.trust_remote_code,
                dtype=cfg.model.dtype)
    print(json.dumps({"adapter": str(res.adapter_dir), "global_step": res.global_step,
                      "resumed_from": res.resumed_from, "base": str(base)}, indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from divtune.serve.merge import merge_lora

    print(json.dumps(merge_lora(args.base, args.adapter, args.output), indent=2, sort_keys=True))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from divtune.evaluate.generation import make_generator

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

        out = darling(cfg, samples=args.samples, work_dir=args.work_dir)
        print()
        print(out["table"])
        return 0
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in ("base", "sft", "grpo", "gapo")]
    if bad or not methods:
        raise DivtuneError(f"--methods: unknown method {bad[0] if bad else '(none)'!r} (use base, sft, grpo, gapo)")
    from divtune.repro import uniformity

    out = uniformity(cfg, methods, samples=args.samples, work_dir=args.work_dir)
    print()
    print(out["table"])
    return 0


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
    s.add_argument("task", choices=["lists", "open-set", "creative", "math"])
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
    e.add_argument("--samples", type=int, default=100)
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--max-new-tokens", type=int, default=32)
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--template-id", type=int, default=0)
    e.add_argument("--system-prompt", default=None, help="chat system message (match the model's training)")
    e.add_argument("--few-shot", type=int, default=0, choices=[0, 1, 2, 3], help="worked <answer> examples")
    e.add_argument("--positional", action="store_true", help="also measure positional bias (shuffled lists)")
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
