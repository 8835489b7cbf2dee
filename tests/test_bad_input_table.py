"""The bad-input table (docs/operations.md, "Bad input"), row by row, and every other CLI bad-input case of the
suite: the exact command a user types; exit code 2; stderr is exactly one line ``divtune: error: …`` naming what
the row says it names (nothing else on stderr, except "retrying MLflow" notices where MLflow itself retries),
nothing on stdout; the model registry — every registered model, version, tag, source and alias — is unchanged,
and so is the directory holding the inputs and every output path a row names (nothing written, moved or removed).

Rows run in this process through ``divtune.cli.main(argv)``; the ``fresh`` ones (one per kind of command: a KFP
command found through its entry point, train, evaluate with S3, serve, a tracking server that is down) also run
as a fresh ``python -m divtune.cli`` process, as a user runs them.

Each case carries its table row; ``test_every_documented_row_has_cases`` fails when the table gains a row that
no case covers.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import REPO, free_port, one_error_line, registry_snapshot, run_cli, tree_snapshot

UID = uuid.uuid4().hex[:6]
CHAMP = f"bi-champ-{UID}"  # v1 champion that replaced nobody
NOCHAMP = f"bi-nochamp-{UID}"  # v1 challenger, no champion
S3HALF = f"bi-s3half-{UID}"  # champion stored at an S3 prefix without a complete upload
S3NOBUCKET = f"bi-s3nobucket-{UID}"  # champion stored in a bucket that does not exist
HALF_BUCKET = f"bi-half-{UID}"
BENCH_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"


@dataclass
class Case:
    row: str  # the documented row's first cell, verbatim
    id: str
    args: list[str]
    needles: list[str]  # every one must be in the error line ({placeholders} filled from the fixture)
    env: dict[str, str] = field(default_factory=dict)
    s3: bool = False  # needs the moto S3 server
    retries: bool = False  # MLflow's HTTP retries print "divtune: retrying MLflow" notices first
    fresh: bool = False  # also as a fresh process
    cwd: str | None = None  # the working directory (a row that names "." runs in a sandbox of its own)


R_PRESET = "unknown preset"
R_CONFIG = "missing / malformed / empty config file, unknown key, wrong type"
R_MODEL = "nonexistent model path, a directory without `config.json`, a corrupted `config.json`, pickle-only weights"
R_DATA = "missing / empty / malformed dataset file"
R_REGISTRY = "unknown registered model or alias in `models:/…`"
R_POLICY = "malformed gate policy, unknown metric in a policy"
R_ROLLBACK = "`registry rollback` with no champion, or a champion that replaced nobody"
R_CRON = "malformed cron (5 fields, out-of-range value, backwards range), unreachable KFP host"
R_S3 = "S3: missing bucket, unreachable endpoint (after retries), prefix without a complete upload"
R_MLFLOW = "MLflow tracking server down (after MLflow's HTTP retries)"
R_EVAL = ("evaluation: missing prompts or benchmark data, HumanEval without `--allow-code-execution`, "
          "samples < 1")
R_DARLING = ("DARLING: group of one, all-empty completions, classifier path missing / not a classifier, "
             "threshold outside [0, 1]")
R_OUTPUT = ("an output directory that exists and was not written by divtune (`train`/`merge`/`train-partitioner`/"
            "`bootstrap-model -o`, `evaluate --out-dir`, `repro --work-dir`), `-o .`, a directory where a file is "
            "expected")
R_FLAG = ("a flag out of its range, NaN or infinity, an empty string (`--kfp-host \"\"`, `--categories \"\"`), "
          "a malformed URL")
R_BOUNDS = ("a config value out of its bounds (NaN, infinities, zero steps or batches, utilisation > 1), a name "
            "MLflow or Kubernetes forbids")
R_LIMITS = ("an oversized input file, too many lists, items, prompts, samples or examples, a prompt longer than the "
            "model's context, YAML aliases expanding or nesting too deep")
R_ENDPOINT = ("an endpoint that does not answer within `--timeout`, answers something that is not JSON or has no "
              "completions; a KFP host that does not answer")
R_CORRUPT = "a corrupt `model.safetensors`, a `models:/` version out of range"
R_CRON_LIST = "a cron that fires more often than once a minute or has non-ASCII digits, a list item holding an answer tag"
R_DARLING_REF = ("DARLING: a pair classifier whose tokenizer has no CLS/SEP token or pads with one, `repro darling` "
                 "with a quality other than list validity")
R_DEPLOY = ("`deploy`: an InferenceService name or namespace Kubernetes refuses, a version whose source KServe cannot "
            "read (not object storage); `serve --log` where no file can be written")
R_SAMPLING = ("sampling settings out of range (`--min-p` or `evaluate.min_p`/`train.min_p` outside [0, 1], `--top-p` "
              "outside (0, 1], `--repetition-penalty` or a `repetition_penalty` ≤ 0), a sampling flag on a suite "
              "that does not take it (`--min-p` on novelty or benchmarks), `--backend` with `--endpoint`, "
              "`--server` with `--model`")
R_NOVELTY = ("`evaluate novelty`: no `--prompts`, a missing prompts file, a line that is not an object with a non-empty "
             "`prompt`, a duplicate `id`, k < 2 (`--samples 1`), `--partitioner classifier` without "
             "`--partitioner-path`, `--quality reward_model` without `--reward-model`, a novelty flag on another "
             "suite, `--paper-prompts` with `--prompts`")

R_ROW_SEEDED = ("`train` with `DIVTUNE_ROW_SEEDED_SAMPLING=1` (rollouts independent of the number of processes) and "
                "`train.use_vllm`")
R_GPU_FIT = ("`compile` / `run --kfp-host` / `schedule` of a cluster preset whose training does not fit its GPUs: "
             "per-GPU memory over `cluster.gpu_memory_gib` (docs/memory.md), a vLLM share too small for its weights and "
             "one sequence's KV cache, several GPUs without a sharded TrainJob, no `cluster.gpu_memory_gib`")
Q32_ON_ONE_GPU = ["--set", "cluster.train_gpus=1", "--set", "cluster.train_distributed=none", "--set",
                  "train.sharding=none", "--set", "train.vllm_tensor_parallel_size=1"]
PATH_MODEL = ["run", "--set", "model.source=path", "--set"]
CLUSTER_TRACKING = ["--set", "cluster.env.MLFLOW_TRACKING_URI=http://mlflow.example:5000"]  # what cluster pods track to
NO_MODEL = "{tmp}/no-model"  # evaluation flags are checked before the model is looked at


def _eval(suite: str, *extra: str) -> list[str]:
    return ["evaluate", suite, "--model", NO_MODEL, "--no-mlflow", *extra]


CASES = [
    Case(R_PRESET, "run-unknown-preset", ["run", "--preset", "no-such-preset"],
         ["unknown preset 'no-such-preset'", "known presets:", "toy"]),
    Case(R_PRESET, "compile-unknown-preset", ["compile", "--preset", "no-such-preset", "-o", "{tmp}/x.yaml"],
         ["unknown preset 'no-such-preset'", "toy"]),
    Case(R_GPU_FIT, "compile-32b-on-one-gpu", ["compile", "--preset", "qwen2.5-32b-gapo", *Q32_ON_ONE_GPU, "-o",
                                                "{tmp}/x.yaml"],
         ["qwen2.5-32b-gapo: training needs", "GiB per GPU", "cluster.gpu_memory_gib is 79"]),
    Case(R_GPU_FIT, "compile-32b-old-one-pod", ["compile", "--preset", "qwen2.5-32b-gapo", "--set",
                                                 "cluster.train_distributed=none", "-o", "{tmp}/x.yaml"],
         ["qwen2.5-32b-gapo", "cluster.train_gpus 4 in one pod", "cluster.train_distributed: trainjob"]),
    Case(R_GPU_FIT, "compile-7b-on-a-48gb-card", ["compile", "--preset", "qwen2.5-7b-gapo", "--set",
                                                   "cluster.gpu_memory_gib=47", "-o", "{tmp}/x.yaml"],
         ["qwen2.5-7b-gapo: vLLM's share 14.1 GiB", "cannot hold 17.9 GiB"]),
    Case(R_GPU_FIT, "kfp-run-32b-on-one-gpu", ["run", "--preset", "qwen2.5-32b-gapo", *Q32_ON_ONE_GPU,
                                                "--kfp-host", "http://127.0.0.1:9"],
         ["qwen2.5-32b-gapo: training needs", "cluster.gpu_memory_gib is 79"]),

    Case(R_CONFIG, "missing-config", ["run", "--config", "{tmp}/nonexistent.yaml"],
         ["config file not found", "{tmp}/nonexistent.yaml"]),
    Case(R_CONFIG, "malformed-config", ["run", "--config", "{tmp}/malformed.yaml"],
         ["{tmp}/malformed.yaml", "not valid YAML"]),
    Case(R_CONFIG, "empty-config", ["run", "--config", "{tmp}/empty.yaml"], ["{tmp}/empty.yaml", "is empty"]),
    Case(R_CONFIG, "unknown-key-in-file", ["run", "--config", "{tmp}/unknown-key.yaml"],
         ["unknown key config.train.max_stepz"]),
    Case(R_CONFIG, "unknown-key-override", ["run", "--set", "train.nope=1"], ["unknown key config.train.nope"]),
    Case(R_CONFIG, "wrong-type-in-file", ["run", "--config", "{tmp}/wrong-type.yaml"],
         ["config.train.max_steps must be an integer"]),
    Case(R_CONFIG, "wrong-type-override", ["run", "--set", "train.learning_rate=fast"],
         ["config.train.learning_rate must be a number"]),
    Case(R_CONFIG, "unknown-method-override", ["run", "--set", "train.method=bogus"],
         ["train.method must be one of"]),
    Case(R_CONFIG, "config-json-env-unset", ["train", "--config-json-env", "NO_SUCH_VAR_X", "--data",
                                             "{tmp}/good.jsonl", "-o", "{tmp}/adapter"],
         ["NO_SUCH_VAR_X is empty or unset"]),

    Case(R_MODEL, "run-nonexistent-model", PATH_MODEL + ["model.path={tmp}/no-model"],
         ["model path does not exist", "{tmp}/no-model"]),
    Case(R_MODEL, "run-model-without-config", PATH_MODEL + ["model.path={tmp}/no-config"],
         ["{tmp}/no-config", "has no config.json"]),
    Case(R_MODEL, "run-corrupted-model-dir", PATH_MODEL + ["model.path={tmp}/corrupted"],
         ["{tmp}/corrupted", "corrupted config.json"]),
    Case(R_MODEL, "run-pickle-only-model", PATH_MODEL + ["model.path={tmp}/pickle-only"],
         ["{tmp}/pickle-only", "pickle weights only"]),
    Case(R_MODEL, "evaluate-nonexistent-model", ["evaluate", "lists", "--model", "{tmp}/no-model"],
         ["model path does not exist", "{tmp}/no-model"]),
    Case(R_MODEL, "evaluate-corrupted-model-dir", ["evaluate", "lists", "--model", "{tmp}/corrupted"],
         ["{tmp}/corrupted", "corrupted config.json"]),
    Case(R_MODEL, "evaluate-pickle-only-model", ["evaluate", "lists", "--model", "{tmp}/pickle-only"],
         ["{tmp}/pickle-only", "safetensors only"]),
    Case(R_MODEL, "merge-pickle-only-base", ["merge", "--base", "{tmp}/pickle-only", "--adapter", "{tmp}/no-config",
                                             "-o", "{tmp}/merged"], ["{tmp}/pickle-only", "pickle weights only"]),
    Case(R_MODEL, "train-corrupted-base", ["train", "--data", "{tmp}/good.jsonl", "--base", "{tmp}/corrupted",
                                           "-o", "{tmp}/adapter"], ["{tmp}/corrupted", "corrupted config.json"]),
    Case(R_MODEL, "serve-nonexistent-model", ["serve", "--model", "{tmp}/no-model"],
         ["model path does not exist", "{tmp}/no-model"], fresh=True),

    Case(R_DATA, "missing-dataset", ["train", "--data", "{tmp}/nonexistent.jsonl", "-o", "{tmp}/adapter"],
         ["dataset file not found", "{tmp}/nonexistent.jsonl"]),
    Case(R_DATA, "empty-dataset", ["train", "--data", "{tmp}/empty.jsonl", "-o", "{tmp}/adapter"],
         ["{tmp}/empty.jsonl", "contains no records"]),
    Case(R_DATA, "malformed-dataset-line", ["train", "--data", "{tmp}/malformed.jsonl", "-o", "{tmp}/adapter"],
         ["{tmp}/malformed.jsonl", "line 2 is not valid JSON"], fresh=True),
    Case(R_DATA, "dataset-record-missing-field", ["train", "--data", "{tmp}/no-items.jsonl", "-o", "{tmp}/adapter"],
         ["no-items.jsonl line 1", "missing field 'items'"]),
    Case(R_DATA, "empty-lists-file", ["evaluate", "lists", "--model", "{tmp}/no-model", "--lists", "{tmp}/empty.json"],
         ["{tmp}/empty.json", "non-empty JSON list"]),
    Case(R_DATA, "malformed-lists-file",
         ["evaluate", "lists", "--model", "{tmp}/no-model", "--lists", "{tmp}/malformed.json"],
         ["{tmp}/malformed.json", "not valid JSON", "at line 3"]),
    Case(R_DATA, "missing-pairs-file", ["train-partitioner", "--data", "{tmp}/missing.jsonl", "-o", "{tmp}/clf"],
         ["pairs file not found", "{tmp}/missing.jsonl"]),

    Case(R_REGISTRY, "evaluate-registry-name-typo", ["evaluate", "lists", "--model", f"models:/{CHAMP}x@champion"],
         [f"registered model '{CHAMP}x' does not exist"]),
    Case(R_REGISTRY, "evaluate-unknown-alias", ["evaluate", "lists", "--model", f"models:/{CHAMP}@champoin"],
         [f"'{CHAMP}'", "no alias 'champoin'"]),
    Case(R_REGISTRY, "evaluate-unknown-version", ["evaluate", "lists", "--model", f"models:/{CHAMP}/7"],
         [f"'{CHAMP}'", "no version 7"]),
    Case(R_REGISTRY, "evaluate-uri-without-alias", ["evaluate", "lists", "--model", f"models:/{CHAMP}"],
         [f"models:/{CHAMP}", "needs @alias or /version"]),
    Case(R_REGISTRY, "registry-show-name-typo", ["registry", "show", "--name", f"{CHAMP}x"],
         [f"registered model '{CHAMP}x' does not exist"]),
    Case(R_REGISTRY, "registry-rollback-name-typo", ["registry", "rollback", "--name", f"{CHAMP}x"],
         [f"registered model '{CHAMP}x' does not exist"]),
    Case(R_REGISTRY, "serve-registry-name-typo", ["serve", "--model", f"models:/{CHAMP}x@champion"],
         [f"registered model '{CHAMP}x' does not exist"]),

    Case(R_POLICY, "malformed-policy-yaml", ["run", "--set", "gate.policy={tmp}/policy-malformed.yaml"],
         ["{tmp}/policy-malformed.yaml", "not valid YAML"]),
    Case(R_POLICY, "policy-unknown-key", ["run", "--set", "gate.policy={tmp}/policy-unknown-key.yaml"],
         ["{tmp}/policy-unknown-key.yaml", "unknown key 'rules'"]),
    Case(R_POLICY, "policy-check-missing-value", ["run", "--set", "gate.policy={tmp}/policy-no-value.yaml"],
         ["checks[0]", "needs a 'value'"]),
    Case(R_POLICY, "policy-unknown-metric", ["run", "--set", "gate.policy={tmp}/policy-unknown-metric.yaml"],
         ["checks[1]", "unknown metric 'jsd_meen'"]),
    Case(R_POLICY, "policy-file-missing", ["run", "--set", "gate.policy={tmp}/no-policy.yaml"],
         ["policy file not found", "{tmp}/no-policy.yaml"]),

    Case(R_ROLLBACK, "rollback-without-champion", ["registry", "rollback", "--name", NOCHAMP],
         [f"'{NOCHAMP}'", "has no champion"]),
    Case(R_ROLLBACK, "rollback-champion-replaced-nobody", ["registry", "rollback", "--name", CHAMP],
         [f"{CHAMP} v1", "no previous champion"]),

    Case(R_CRON, "cron-five-fields", ["schedule", "--cron", "0 3 * * *", "--kfp-host", "http://127.0.0.1:9"],
         ["'0 3 * * *'", "6 fields"]),
    Case(R_CRON, "cron-out-of-range", ["schedule", "--cron", "0 60 3 * * *", "--kfp-host", "http://127.0.0.1:9"],
         ["'0 60 3 * * *'", "minutes value 60 outside 0-59"]),
    Case(R_CRON, "cron-backwards-range", ["schedule", "--cron", "0 0 5-2 * * *", "--kfp-host", "http://127.0.0.1:9"],
         ["'0 0 5-2 * * *'", "runs backwards"]),
    Case(R_CRON, "schedule-unreachable-kfp", ["schedule", "--cron", "0 0 3 * * *", "--kfp-host", "http://127.0.0.1:9",
                                              *CLUSTER_TRACKING], ["cannot reach Kubeflow Pipelines at http://127.0.0.1:9"]),
    Case(R_CRON, "run-unreachable-kfp", ["run", "--kfp-host", "http://127.0.0.1:9", *CLUSTER_TRACKING],
         ["cannot reach Kubeflow Pipelines at http://127.0.0.1:9"], fresh=True),

    Case(R_S3, "run-missing-bucket", ["run", "--set", f"storage.models_uri=s3://no-such-bucket-{UID}/models"],
         [f"s3://no-such-bucket-{UID}/models", "does not exist"], s3=True),
    Case(R_S3, "run-unreachable-endpoint", ["run", "--set", f"storage.models_uri=s3://{HALF_BUCKET}/m", "--set",
                                            "storage.endpoint_url=http://127.0.0.1:9"],
         [f"s3://{HALF_BUCKET}/m", "endpoint unreachable after retries"], s3=True),
    Case(R_S3, "evaluate-incomplete-upload", ["evaluate", "lists", "--model", f"models:/{S3HALF}@champion"],
         [f"s3://{HALF_BUCKET}/half", "no complete divtune upload"], s3=True, fresh=True),
    Case(R_S3, "evaluate-missing-bucket", ["evaluate", "lists", "--model", f"models:/{S3NOBUCKET}@champion"],
         [f"s3://no-such-bucket-{UID}/m", "bucket does not exist"], s3=True),
    Case(R_S3, "evaluate-unreachable-endpoint", ["evaluate", "lists", "--model", f"models:/{S3HALF}@champion"],
         [f"s3://{HALF_BUCKET}/half", "endpoint unreachable after retries"], s3=True,
         env={"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}),
    Case(R_S3, "benchmarks-data-prefix-empty", ["evaluate", "benchmarks", "--model", "{toy}", "--data",
                                                f"s3://{HALF_BUCKET}/no-bench", "--tasks", "gsm8k",
                                                "--num-fewshot", "0"],
         [f"s3://{HALF_BUCKET}/no-bench/gsm8k/test.jsonl"], s3=True),

    # the session's policy: one retry without backoff (conftest); divtune's default policy: test_faults
    Case(R_MLFLOW, "registry-show-server-down", ["registry", "show", "--name", CHAMP],
         ["MLflow at {dead_mlflow} failed", "Max retries exceeded"], env={"MLFLOW_TRACKING_URI": "{dead_mlflow}"},
         retries=True, fresh=True),
    Case(R_MLFLOW, "run-server-down", ["run", "--set", "train.max_steps=1"],
         ["MLflow at {dead_mlflow} failed"], retries=True, env={"MLFLOW_TRACKING_URI": "{dead_mlflow}"}),

    Case(R_ROW_SEEDED, "row-seeded-sampling-with-vllm",
         ["train", "--data", "{tmp}/good.jsonl", "--base", "{toy}", "-o", "{tmp}/adapter", "--set", "train.use_vllm=true"],
         ["DIVTUNE_ROW_SEEDED_SAMPLING=1", "train.use_vllm=false"], env={"DIVTUNE_ROW_SEEDED_SAMPLING": "1"}),

    Case(R_DARLING, "darling-group-of-one", ["run", "--preset", "toy-darling", "--set", "train.num_generations=1"],
         ["train.num_generations must be >= 2"]),
    Case(R_DARLING, "darling-threshold-out-of-range",
         ["run", "--preset", "toy-darling", "--set", "train.darling.threshold=1.5"],
         ["train.darling.threshold must be in [0, 1]"]),
    Case(R_DARLING, "darling-classifier-path-missing",
         ["train", "--preset", "toy-darling", "--data", "{tmp}/good.jsonl", "--base", "{toy}", "-o", "{tmp}/adapter",
          "--set", "train.darling.partitioner=classifier", "--set",
          "train.darling.partitioner_path={tmp}/no-classifier"],
         ["{tmp}/no-classifier", "does not exist"]),
    # the real-model presets need the paths a user must supply: refused before the data, a download, any step
    Case(R_DARLING, "darling-math-preset-train-without-classifier",
         ["train", "--preset", "qwen3-4b-darling-math", "--data", "{tmp}/math.jsonl", "-o", "{tmp}/adapter"],
         ["train.darling.partitioner_path"]),
    Case(R_DARLING, "darling-instruct-preset-run-without-paths", ["run", "--preset", "llama3.1-8b-darling-instruct"],
         ["train.darling.partitioner_path", "train.darling.reward_model_path"]),

    Case(R_EVAL, "open-set-missing-prompts", _eval("open-set", "--prompts", "{tmp}/nope.json"),
         ["prompts file not found", "{tmp}/nope.json"]),
    Case(R_EVAL, "creative-malformed-prompts", _eval("creative", "--prompts", "{tmp}/malformed.json"),
         ["{tmp}/malformed.json", "is not valid JSON"]),
    Case(R_EVAL, "open-set-empty-prompts", _eval("open-set", "--prompts", "{tmp}/empty.json"),
         ["{tmp}/empty.json", "non-empty JSON list"]),
    Case(R_EVAL, "open-set-zero-samples", _eval("open-set", "--samples", "0"), ["--samples", "got 0"]),
    Case(R_EVAL, "creative-negative-samples", _eval("creative", "--samples", "-3"), ["--samples", "got -3"]),
    Case(R_EVAL, "samples-not-an-integer", _eval("lists", "--samples", "many"), ["--samples", "'many'"]),
    Case(R_EVAL, "creative-temperature-not-a-number", _eval("creative", "--temperatures", "0.5,hot"),
         ["'hot' is not a number"]),
    Case(R_EVAL, "creative-temperature-zero", _eval("creative", "--temperatures", "0.5,0"), ["must be > 0"]),
    Case(R_EVAL, "open-set-temperatures-flag", _eval("open-set", "--temperatures", "0.5"), ["creative suite only"]),
    Case(R_EVAL, "open-set-lists-flag", _eval("open-set", "--lists", "x.json"), ["--lists applies to the lists suite"]),
    Case(R_EVAL, "benchmarks-missing-data", ["evaluate", "benchmarks", "--model", "{toy}", "--data", "{tmp}/nodata",
                                             "--tasks", "gsm8k"], ["{tmp}/nodata"]),
    Case(R_EVAL, "benchmarks-missing-fewshot-file", ["evaluate", "benchmarks", "--model", "{toy}", "--data",
                                                     "{tmp}/bench-partial", "--tasks", "gsm8k"],
         ["{tmp}/bench-partial/gsm8k/train.jsonl"]),
    Case(R_EVAL, "humaneval-without-opt-in", ["evaluate", "benchmarks", "--model", "{toy}", "--data", "{tmp}",
                                              "--tasks", "humaneval"], ["--allow-code-execution"]),
    Case(R_EVAL, "humaneval-in-the-default-tasks", ["evaluate", "benchmarks", "--model", "{toy}", "--data",
                                                    str(BENCH_FIXTURES)], ["--allow-code-execution"]),

    Case(R_OUTPUT, "train-output-dir-not-ours", ["train", "--data", "{tmp}/good.jsonl", "-o", "{tmp}/foreign"],
         ["-o {tmp}/foreign", "not written by divtune", "--force"]),
    Case(R_OUTPUT, "evaluate-out-dir-not-ours", ["evaluate", "open-set", "--model", "{toy}", "--samples", "1",
                                                 "--out-dir", "{tmp}/foreign"],
         ["--out-dir {tmp}/foreign", "not written by divtune", "--force"]),
    Case(R_OUTPUT, "repro-work-dir-not-ours", ["repro", "uniformity", "--work-dir", "{tmp}/foreign"],
         ["{tmp}/foreign", "not written by divtune", "--force"]),
    Case(R_OUTPUT, "train-output-current-dir", ["train", "--data", "{tmp}/good.jsonl", "-o", "."],
         ["-o .", "refusing to replace the current"], cwd="{tmp}/workdir"),
    Case(R_OUTPUT, "evaluate-output-file-is-a-directory", ["evaluate", "lists", "--model", NO_MODEL, "-o",
                                                           "{tmp}/foreign"], ["-o {tmp}/foreign", "is a directory"]),

    Case(R_FLAG, "creative-zero-max-new-tokens", _eval("creative", "--max-new-tokens", "0"),
         ["--max-new-tokens", "got 0"]),
    Case(R_FLAG, "temperature-nan", _eval("lists", "--temperature", "nan"), ["--temperature", "finite", "nan"]),
    Case(R_FLAG, "kfp-host-empty", ["run", "--kfp-host", ""], ["--kfp-host", "'' is not a Kubeflow Pipelines URL"]),
    Case(R_FLAG, "kfp-host-malformed", ["run", "--kfp-host", "notaurl"], ["--kfp-host", "'notaurl'"]),
    Case(R_FLAG, "categories-empty", ["synthesize", "lists", "--categories", "", "-o", "{tmp}/x.jsonl"],
         ["--categories", "empty"]),

    Case(R_BOUNDS, "zero-steps-override", ["run", "--set", "train.max_steps=0"], ["train.max_steps must be >= 1"]),
    Case(R_BOUNDS, "nan-learning-rate-override", ["run", "--set", "train.learning_rate=nan"],
         ["train.learning_rate must be a finite number"]),
    Case(R_BOUNDS, "kfp-run-without-a-tracking-server", ["run", "--kfp-host", "http://127.0.0.1:9"],
         ["cluster.env.MLFLOW_TRACKING_URI", "http(s) URL"]),
    Case(R_BOUNDS, "model-name-mlflow-forbids", ["run", "--set", "registry.model_name=bad/name"],
         ["registry.model_name 'bad/name'", "MLflow forbids"]),

    Case(R_LIMITS, "too-many-lists", ["evaluate", "lists", "--model", NO_MODEL, "--lists", "{tmp}/many.json"],
         ["{tmp}/many.json", "5 lists", "DIVTUNE_MAX_LISTS"], env={"DIVTUNE_MAX_LISTS": "2"}),
    Case(R_LIMITS, "oversized-lists-file", ["evaluate", "lists", "--model", NO_MODEL, "--lists", "{tmp}/big.json"],
         ["{tmp}/big.json", "DIVTUNE_MAX_INPUT_MB"], env={"DIVTUNE_MAX_INPUT_MB": "1"}),
    Case(R_LIMITS, "prompt-longer-than-context", ["evaluate", "lists", "--model", "{toy}", "--lists", "{tmp}/long.json",
                                                  "--samples", "1"], ["exceeds the model's context", "{toy}"]),
    Case(R_LIMITS, "config-nested-too-deep", ["run", "--config", "{tmp}/deep.yaml"],
         ["{tmp}/deep.yaml", "nested more than"]),
    Case(R_LIMITS, "config-yaml-aliases-expanding", ["run", "--config", "{tmp}/bomb.yaml"],
         ["{tmp}/bomb.yaml", "aliases"]),

    Case(R_ENDPOINT, "endpoint-that-never-answers", ["evaluate", "lists", "--endpoint", "{silent}", "--timeout", "1",
                                                     "--samples", "1"], ["{silent}", "did not answer within 1 s"]),
    Case(R_ENDPOINT, "endpoint-that-answers-not-json", ["evaluate", "lists", "--endpoint", "{not_json}", "--samples",
                                                        "1"], ["{not_json}", "not JSON"]),

    Case(R_CORRUPT, "evaluate-corrupt-safetensors", ["evaluate", "lists", "--model", "{tmp}/bad-weights"],
         ["{tmp}/bad-weights"]),
    Case(R_CORRUPT, "evaluate-version-out-of-range", ["evaluate", "lists", "--model", f"models:/{CHAMP}/0"],
         [f"models:/{CHAMP}/0", "out of range"]),

    Case(R_CRON_LIST, "cron-every-second", ["schedule", "--cron", "* * * * * *", "--kfp-host", "http://127.0.0.1:9"],
         ["'* * * * * *'", "more often than once a minute"]),
    Case(R_CRON_LIST, "cron-non-ascii-digit", ["schedule", "--cron", "0 0 \u0663 * * *", "--kfp-host",
                                               "http://127.0.0.1:9"], ["non-ASCII", "0-9"]),
    Case(R_CRON_LIST, "list-item-with-answer-tag", ["evaluate", "lists", "--model", NO_MODEL, "--lists",
                                                    "{tmp}/tagged.json"], ["<answer>a</answer>", "answer tag"]),

    Case(R_NOVELTY, "novelty-without-prompts", _eval("novelty"), ["evaluate novelty needs --prompts FILE"]),
    Case(R_NOVELTY, "novelty-missing-prompts-file", _eval("novelty", "--prompts", "{tmp}/nope.jsonl"),
         ["novelty prompts file not found", "{tmp}/nope.jsonl"]),
    Case(R_NOVELTY, "novelty-line-not-an-object", _eval("novelty", "--prompts", "{tmp}/novelty-list-line.jsonl"),
         ["{tmp}/novelty-list-line.jsonl line 2", "expected an object with a \"prompt\""]),
    Case(R_NOVELTY, "novelty-line-without-prompt", _eval("novelty", "--prompts", "{tmp}/novelty-no-prompt.jsonl"),
         ["{tmp}/novelty-no-prompt.jsonl line 1", "non-empty string field 'prompt'"]),
    Case(R_NOVELTY, "novelty-duplicate-id", _eval("novelty", "--prompts", "{tmp}/novelty-dup.jsonl"),
         ["{tmp}/novelty-dup.jsonl line 2", "duplicate id 'a'"]),
    Case(R_NOVELTY, "novelty-k-below-two", _eval("novelty", "--prompts", "{tmp}/novelty.jsonl", "--samples", "1"),
         ["--samples is k", ">= 2", "got 1"]),
    Case(R_NOVELTY, "novelty-classifier-without-path",
         _eval("novelty", "--prompts", "{tmp}/novelty.jsonl", "--partitioner", "classifier"), ["--partitioner-path"]),
    Case(R_NOVELTY, "novelty-reward-model-quality-without-path",
         _eval("novelty", "--prompts", "{tmp}/novelty.jsonl", "--quality", "reward_model"), ["--reward-model"]),
    Case(R_NOVELTY, "novelty-flag-on-open-set", _eval("open-set", "--partitioner", "exact"),
         ["--partitioner applies to the novelty suite, not open-set"]),
    Case(R_NOVELTY, "paper-prompts-with-prompts-file",
         _eval("open-set", "--paper-prompts", "--prompts", "{tmp}/empty.json"), ["--paper-prompts and --prompts"]),

    # the classifier input is built as the reference builds it ("CLS s1 SEP s2 SEP"): refused before any step
    Case(R_DARLING_REF, "darling-classifier-tokenizer-without-cls-sep",
         ["train", "--preset", "toy-darling", "--data", "{tmp}/good.jsonl", "--base", "{toy}", "-o", "{tmp}/adapter",
          "--set", "train.darling.partitioner=classifier", "--set", "train.darling.partitioner_path={tmp}/clf-no-sep"],
         ["Qwen2Tokenizer", "no CLS token", "CLS s1 SEP s2 SEP"]),
    Case(R_DARLING_REF, "repro-darling-non-list-quality", ["repro", "darling", "--preset", "qwen3-4b-darling-math"],
         ["train.darling.quality must be list_validity", "'math'"]),
    Case(R_DEPLOY, "deploy-bad-isvc-name", ["deploy", "--model", f"models:/{CHAMP}@champion", "--dry-run",
                                            "--isvc-name", "Toy_Champion"],
         ["InferenceService name 'Toy_Champion' is not valid"]),
    Case(R_DEPLOY, "deploy-bad-namespace", ["deploy", "--model", f"models:/{CHAMP}@champion", "--dry-run",
                                            "--namespace", "Team A"], ["namespace 'Team A' is not valid"]),
    Case(R_DEPLOY, "deploy-local-source", ["deploy", "--model", f"models:/{CHAMP}@champion", "--dry-run"],
         [f"models:/{CHAMP}@champion (v1)", "KServe reads object storage", "storage.models_uri"]),
    Case(R_SAMPLING, "min-p-above-one", _eval("lists", "--min-p", "1.5"), ["--min-p", "[0, 1]", "1.5"]),
    Case(R_SAMPLING, "top-p-zero", _eval("lists", "--top-p", "0"), ["--top-p", "(0, 1]"]),
    Case(R_SAMPLING, "repetition-penalty-zero", _eval("lists", "--repetition-penalty", "0"),
         ["--repetition-penalty", "0"]),
    Case(R_SAMPLING, "min-p-on-novelty", _eval("novelty", "--min-p", "0.1", "--prompts", "x.jsonl"),
         ["--min-p applies to the lists, open-set and creative suites"]),
    Case(R_SAMPLING, "min-p-on-benchmarks", ["evaluate", "benchmarks", "--model", NO_MODEL, "--min-p", "0.1"],
         ["--min-p does not apply to benchmarks"]),
    Case(R_SAMPLING, "backend-with-endpoint", ["evaluate", "lists", "--endpoint", "http://127.0.0.1:9", "--backend",
                                               "hf"], ["--backend applies to --model"]),
    Case(R_SAMPLING, "server-with-model", _eval("lists", "--server", "vllm"), ["--server applies to --endpoint"]),
    Case(R_SAMPLING, "config-min-p-above-one", ["run", "--set", "evaluate.min_p=1.5"],
         ["evaluate.min_p must be in [0, 1]", "1.5"]),
    Case(R_SAMPLING, "config-train-repetition-penalty-zero", ["run", "--set", "train.repetition_penalty=0"],
         ["train.repetition_penalty must be > 0"]),
    Case(R_DEPLOY, "serve-log-unwritable", ["serve", "--model", "{toy}", "--log", "{tmp}/good.jsonl/serve.log"],
         ["cannot write the server log", "{tmp}/good.jsonl/serve.log"]),
]


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


class _NotJSON(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"hello, not json"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, toy_model_dir, s3_endpoint):
    """Bad files and directories, endpoints that misbehave, and a registry holding the models the registry rows
    point at."""
    import boto3

    from divtune.data.lists import synthesize_lists, write_jsonl
    from divtune.data.math import synthesize_arithmetic
    from divtune.data.math import write_jsonl as write_math
    from divtune.registry import models as reg

    t = tmp_path_factory.mktemp("bad-input")
    (t / "malformed.yaml").write_text("train: [1, 2\n")
    (t / "empty.yaml").write_text("")
    (t / "unknown-key.yaml").write_text("preset: toy\ntrain:\n  max_stepz: 3\n")
    (t / "wrong-type.yaml").write_text("preset: toy\ntrain:\n  max_steps: three\n")
    (t / "no-config").mkdir()
    (t / "corrupted").mkdir()
    (t / "corrupted" / "config.json").write_text('{"model_type": "qwen2", ')
    (t / "corrupted" / "model.safetensors").write_bytes(b"\0" * 64)
    (t / "pickle-only").mkdir()
    (t / "pickle-only" / "config.json").write_text('{"model_type": "qwen2"}')
    (t / "pickle-only" / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # a pickle: never loaded
    write_jsonl(synthesize_lists(4, 0), t / "good.jsonl")
    write_math(synthesize_arithmetic(4, 0), t / "math.jsonl")
    (t / "empty.jsonl").write_text("")
    good_line = (t / "good.jsonl").read_text().splitlines()[0]
    (t / "malformed.jsonl").write_text(good_line + "\n{\"id\": \"x\", \"prompt\": \n")
    rec = json.loads(good_line)
    rec.pop("items")
    (t / "no-items.jsonl").write_text(json.dumps(rec) + "\n")
    (t / "empty.json").write_text("[]")
    (t / "malformed.json").write_text('[["a", "b"],\n ["c", \n')
    (t / "policy-malformed.yaml").write_text("checks: [\n")
    (t / "policy-unknown-key.yaml").write_text("rules:\n  - {metric: jsd_mean, rule: decrease}\n")
    (t / "policy-no-value.yaml").write_text("checks:\n  - {metric: invalid_rate, rule: at_most}\n")
    (t / "policy-unknown-metric.yaml").write_text("checks:\n  - {metric: invalid_rate, rule: at_most, value: 0.1}\n"
                                                  "  - {metric: jsd_meen, rule: decrease}\n")
    (t / "foreign").mkdir()  # a user's directory: divtune did not write it
    (t / "foreign" / "mine.txt").write_text("not divtune's")
    (t / "workdir").mkdir()
    (t / "workdir" / "notes.txt").write_text("a user's working directory")
    (t / "many.json").write_text(json.dumps([["a", "b"]] * 5))
    (t / "novelty.jsonl").write_text('{"id": "a", "prompt": "Name a colour."}\n')
    (t / "novelty-list-line.jsonl").write_text('{"prompt": "Name a colour."}\n["Name a planet."]\n')
    (t / "novelty-no-prompt.jsonl").write_text('{"id": "a", "text": "Name a colour."}\n')
    (t / "novelty-dup.jsonl").write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    (t / "big.json").write_text('[["a", "b"]]' + " " * (1024 * 1024 + 1))
    (t / "long.json").write_text(json.dumps([[f"word{i}" for i in range(600)]]))
    (t / "deep.yaml").write_text("preset: toy\nx: " + "[" * 100 + "]" * 100 + "\n")
    bomb = ["preset: toy", 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (t / "bomb.yaml").write_text("\n".join(bomb) + "\n")  # 10^7 elements once expanded
    (t / "tagged.json").write_text(json.dumps([["<answer>a</answer>", "b"]]))
    (t / "bad-weights").mkdir()
    (t / "bad-weights" / "config.json").write_text('{"model_type": "qwen2"}')
    (t / "bad-weights" / "model.safetensors").write_bytes(b"garbage, not a safetensors header")
    shutil.copytree(BENCH_FIXTURES, t / "bench-partial")
    (t / "bench-partial" / "gsm8k" / "train.jsonl").unlink()  # the few-shot file
    _classifier_without_cls_sep(t / "clf-no-sep", toy_model_dir)

    # registry state the rows must leave untouched (the session's SQLite store)
    model_dir = t / "registered"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    v = reg.register_version(CHAMP, str(model_dir), None, f"rk-{UID}-1", {"divtune.decision": "promote",
                                                                         reg.PREVIOUS_CHAMPION_TAG: ""})
    reg.set_alias(CHAMP, reg.CHALLENGER, v.version)
    reg.set_alias(CHAMP, reg.CHAMPION, v.version)
    v = reg.register_version(NOCHAMP, str(model_dir), None, f"rk-{UID}-2", {"divtune.decision": "reject"})
    reg.set_alias(NOCHAMP, reg.CHALLENGER, v.version)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=HALF_BUCKET)
    s3.put_object(Bucket=HALF_BUCKET, Key="half/model.safetensors", Body=b"partial")
    for name, src in ((S3HALF, f"s3://{HALF_BUCKET}/half"), (S3NOBUCKET, f"s3://no-such-bucket-{UID}/m")):
        v = reg.register_version(name, src, None, f"rk-{UID}-{name}", {"divtune.decision": "promote"})
        reg.set_alias(name, reg.CHAMPION, v.version)
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    not_json = ThreadingHTTPServer(("127.0.0.1", 0), _NotJSON)
    threading.Thread(target=not_json.serve_forever, daemon=True).start()
    yield {"tmp": str(t), "toy": str(toy_model_dir), "dead_mlflow": f"http://127.0.0.1:{free_port()}",
           "s3": s3_endpoint, "silent": f"http://127.0.0.1:{silent.getsockname()[1]}",
           "not_json": f"http://127.0.0.1:{not_json.server_address[1]}"}
    not_json.shutdown()
    not_json.server_close()
    silent.close()


def _fill(s: str, ctx: dict) -> str:
    return s.format(**ctx)


def _env(case: Case, inputs: dict) -> dict[str, str]:
    env = {}
    if case.s3:  # credentials and the moto endpoint (a row may point the endpoint elsewhere)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL_S3": inputs["s3"]}
    return {**env, **{k: _fill(v, inputs) for k, v in case.env.items()}}


def _check(case: Case, res, inputs: dict) -> None:
    line = one_error_line(res, ("divtune: retrying MLflow at ",) if case.retries else ())
    for needle in case.needles:
        assert _fill(needle, inputs) in line, f"{needle!r} not in {line!r}"
    assert res.stdout == "", res.stdout[-2000:]


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_row(case: Case, inputs, cli, monkeypatch):
    args = [_fill(a, inputs) for a in case.args]
    if case.cwd:
        monkeypatch.chdir(_fill(case.cwd, inputs))
    before, files = registry_snapshot(), tree_snapshot(Path(inputs["tmp"]))
    res = cli(*args, env=_env(case, inputs))
    _check(case, res, inputs)
    assert registry_snapshot() == before, "the registry changed"
    assert tree_snapshot(Path(inputs["tmp"])) == files, "the command wrote, moved or removed files"


FRESH = [c for c in CASES if c.fresh]


@pytest.mark.parametrize("case", FRESH, ids=[c.id for c in FRESH])
def test_bad_input_row_in_a_fresh_process(case: Case, inputs):
    args = [_fill(a, inputs) for a in case.args]
    before, files = registry_snapshot(), tree_snapshot(Path(inputs["tmp"]))
    res = run_cli(*args, env=_env(case, inputs), cwd=Path(_fill(case.cwd, inputs)) if case.cwd else None,
                  timeout=300)
    _check(case, res, inputs)
    assert registry_snapshot() == before, "the registry changed"
    assert tree_snapshot(Path(inputs["tmp"])) == files, "the command wrote, moved or removed files"


def test_fresh_rows_cover_every_kind_of_command():
    """One fresh-process row per way a command is reached: the KFP side's entry point (run), the library's
    commands (train, evaluate, serve), S3 and a tracking server that does not answer."""
    assert {c.args[0] for c in FRESH} >= {"run", "train", "evaluate", "serve", "registry"}
    assert any(c.s3 for c in FRESH) and any(c.retries for c in FRESH)


def documented_table() -> tuple[Path, list[str]]:
    """The bad-input table's first cells, from docs/operations.md (README.md while the docs do not hold it)."""
    for path in (REPO / "docs" / "operations.md", REPO / "README.md"):
        text = path.read_text() if path.is_file() else ""
        if "\n## Bad input" in text:
            section = text.split("\n## Bad input", 1)[1].split("\n## ", 1)[0]
            return path, [ln.split("|")[1].strip() for ln in section.splitlines()
                          if ln.startswith("| ") and not ln.startswith("| input") and not re.match(r"\|\s*-", ln)]
    raise AssertionError("no '## Bad input' section in docs/operations.md or README.md")


def test_every_documented_row_has_cases():
    """Each row of the documented bad-input table is covered by a case above, and every case names a row."""
    path, rows = documented_table()
    assert rows, f"{path}: the bad-input table has no rows"
    missing = [r for r in rows if r not in {c.row for c in CASES}]
    assert not missing, f"{path} rows without a test case: {missing}"
    unknown = sorted({c.row for c in CASES} - set(rows))
    assert not unknown, f"cases claim rows that {path} does not have: {unknown}"


# --------------------------------------------------------------------------------------
# bad inputs that are not CLI commands of their own
# --------------------------------------------------------------------------------------


def test_candidate_without_evaluation_registers_nothing(tmp_path, inputs):
    """The promote stage with no candidate evaluation: one-line DivtuneError naming the file, before any
    MLflow run or registry call; the registry (and the champion alias) unchanged."""
    from divtune import stages
    from divtune.config import load_config
    from divtune.errors import DivtuneError
    from divtune.registry import models as reg

    cfg = load_config("toy", overrides=[f"registry.model_name={CHAMP}", f"registry.experiment=bi-{UID}"])
    key = f"no-eval-{UID}"
    stages.open_run(cfg.to_yaml(), key)
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"metrics": {"jsd_mean": 0.3, "invalid_rate": 0.0}}))
    before = registry_snapshot()
    for cand in (tmp_path / "missing.json", tmp_path / "broken.json"):
        if cand.name == "broken.json":
            cand.write_text('{"role": "candidate"}')  # written, but no metrics in it
        with pytest.raises(DivtuneError) as err:
            stages.promote(cfg.to_yaml(), key, str(cand), str(base), str(tmp_path / "summary.json"))
        msg = str(err.value)
        assert "\n" not in msg and str(cand) in msg
        assert ("has no evaluation" in msg) if cand.name == "missing.json" else ("malformed" in msg)
    assert registry_snapshot() == before
    assert str(reg.get_alias(CHAMP, reg.CHAMPION).version) == "1"
    assert not (tmp_path / "summary.json").exists()


def _classifier_without_cls_sep(d: Path, toy_dir) -> None:
    """A tiny pair classifier saved with the toy's Qwen2Tokenizer (BOS/EOS, no CLS/SEP, no ChatML tokens)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(toy_dir)
    torch.manual_seed(0)
    Qwen2ForSequenceClassification(Qwen2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_labels=2, pad_token_id=tok.pad_token_id)).save_pretrained(d)
    tok.save_pretrained(d)
