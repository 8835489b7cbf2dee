"""The CLI's KFP commands: ``divtune run``, ``divtune compile``, ``divtune schedule``.

They live on the pipeline side so that the ``divtune`` library imports no KFP; the CLI finds them
through the ``divtune.commands`` entry point (:func:`register`).  KFP itself is imported only when a
command runs, so ``divtune --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from divtune.cli import config_args, load_args_config
from divtune.errors import DivtuneError, one_line
from divtune.flags import count, text, url


def register(sub: argparse._SubParsersAction) -> None:
    """Add the KFP commands to the ``divtune`` parser's subcommands."""
    r = sub.add_parser("run", help="run the whole retraining pipeline locally (kfp.local)")
    config_args(r)
    r.add_argument("--run-key", default=None, type=text("a run key"), help="pipeline run key (default: a fresh one)")
    r.add_argument("--kfp-host", default=None, type=url("a Kubeflow Pipelines URL"), help="submit to a Kubeflow Pipelines endpoint instead")
    r.add_argument("--cache", action="store_true",
                   help="reuse cached step outputs (KFP caching) when re-running the same --run-key")
    r.set_defaults(func=cmd_run)

    sc = sub.add_parser("schedule", help="create a KFP recurring run (scheduled retraining)")
    config_args(sc)
    sc.add_argument("--cron", required=True, type=text("a cron expression"), help="6-field cron, seconds first: '0 0 3 * * *' = daily 03:00")
    sc.add_argument("--kfp-host", required=True, type=url("a Kubeflow Pipelines URL"), help="Kubeflow Pipelines endpoint URL")
    sc.add_argument("--name", default=None, type=text("a recurring run name"), help="recurring run name")
    sc.add_argument("--max-concurrency", type=count(max=100), default=1, help="runs of the schedule at once")
    sc.set_defaults(func=cmd_schedule)

    c = sub.add_parser("compile", help="write the KFP pipeline spec YAML")
    config_args(c)
    c.add_argument("-o", "--output", default="retrain.yaml", type=text("a file"))
    c.set_defaults(func=cmd_compile)


def cmd_run(args: argparse.Namespace) -> int:
    from divtune.preflight import check_run

    cfg = load_args_config(args)
    check_run(cfg)
    if args.kfp_host:
        from divtune.preflight import check_cluster
        from divtune_kfp.pipelines.remote import submit

        check_cluster(cfg, submitting=True)
        print(submit(cfg, args.kfp_host, run_key=args.run_key))
        return 0
    key = _run_locally(cfg, args.run_key, args.cache)
    print(_summary(cfg, key))
    return 0


def _run_locally(cfg, run_key: str | None, cache: bool) -> str:
    """The whole DAG under kfp.local, after the tracking server and the bucket answered; its run key."""
    from divtune.preflight import check_services
    from divtune_kfp.pipelines.local import run_local

    check_services(cfg)
    try:
        return run_local(cfg, run_key, enable_caching=cache)
    except RuntimeError as exc:
        msg = re.sub(r"\x1b\[[0-9;]*m", "", one_line(exc, None))  # kfp.local colours its messages
        raise DivtuneError(f"pipeline failed: {msg[:300]}") from None


def _summary(cfg, key: str) -> str:
    """The run summary the promote step left on the MLflow parent run, plus where the base model came from."""
    from divtune.promotion.promote import format_summary
    from divtune.registry import tracking

    run = tracking.find_pipeline_run(cfg.registry.experiment, key)
    data = json.loads(Path(tracking.client().download_artifacts(run.info.run_id, "summary.json")).read_text())
    text = format_summary(data)
    prep = tracking.find_stage_run(cfg.registry.experiment, key, "prepare_base")
    if prep is not None and "base_model" in prep.data.params:
        hit = prep.data.params.get("base_cache_hit")
        note = {"True": " (cached, reused)", "False": " (built by this run, now cached)"}.get(hit, "")
        text += f"\n  base model: {prep.data.params['base_model']}{note}"
    return text


def cmd_schedule(args: argparse.Namespace) -> int:
    from divtune.cron import validate_cron
    from divtune.preflight import check_cluster, check_run
    from divtune_kfp.pipelines.remote import schedule

    expr = validate_cron(args.cron)  # a malformed cron never reaches the cluster
    cfg = load_args_config(args)
    check_run(cfg)
    check_cluster(cfg, submitting=True)
    rid = schedule(cfg, args.kfp_host, expr, name=args.name, max_concurrency=args.max_concurrency)
    print(f"recurring run {rid}: {cfg.name} on '{expr}' at {args.kfp_host}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from divtune_kfp.pipelines.local import compile_pipeline

    from divtune.outputs import check_output_file

    from divtune.preflight import check_cluster

    out = check_output_file(args.output)
    cfg = load_args_config(args)
    check_cluster(cfg, submitting=False)
    print(f"wrote {compile_pipeline(cfg, out)}")
    return 0
