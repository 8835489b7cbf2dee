"""The README's "Bad input" table, row by row (issue 7): the exact command a user types, run as a fresh
process; exit code 2; stderr is exactly one line ``divtune: error: …`` naming what the row says it names
(nothing else on stderr, except "retrying MLflow" notices where MLflow itself retries); and the model
registry — every registered model, version, tag, source and alias — is byte-for-byte unchanged.

Each case carries its README row; ``test_every_readme_row_has_cases`` fails when the table gains a row
that no case covers.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, _free_port, run_cli

UID = uuid.uuid4().hex[:6]
CHAMP = f"bi-champ-{UID}"  # v1 champion that replaced nobody
NOCHAMP = f"bi-nochamp-{UID}"  # v1 challenger, no champion
S3HALF = f"bi-s3half-{UID}"  # champion stored at an S3 prefix without a complete upload
S3NOBUCKET = f"bi-s3nobucket-{UID}"  # champion stored in a bucket that does not exist
HALF_BUCKET = f"bi-half-{UID}"


@dataclass
class Case:
    row: str  # the README row's first cell, verbatim
    id: str
    args: list[str]
    needles: list[str]  # every one must be in the error line ({placeholders} filled from the fixture)
    env: dict[str, str] = field(default_factory=dict)
    s3: bool = False  # needs the moto S3 server
    retries: bool = False  # MLflow's HTTP retries may print "divtune: retrying MLflow" notices first


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

PATH_MODEL = ["run", "--set", "model.source=path", "--set"]

CASES = [
    Case(R_PRESET, "run-unknown-preset", ["run", "--preset", "no-such-preset"],
         ["unknown preset 'no-such-preset'", "known presets:", "toy"]),
    Case(R_PRESET, "compile-unknown-preset", ["compile", "--preset", "no-such-preset", "-o", "{tmp}/x.yaml"],
         ["unknown preset 'no-such-preset'", "toy"]),

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

    Case(R_MODEL, "run-nonexistent-model", PATH_MODEL + ["model.path={tmp}/no-model"],
         ["model path does not exist", "{tmp}/no-model"]),
    Case(R_MODEL, "run-model-without-config", PATH_MODEL + ["model.path={tmp}/no-config"],
         ["{tmp}/no-config", "has no config.json"]),
    Case(R_MODEL, "run-corrupted-model-dir", PATH_MODEL + ["model.path={tmp}/corrupted"],
         ["{tmp}/corrupted", "corrupted config.json"]),
    Case(R_MODEL, "run-pickle-only-model", PATH_MODEL + ["model.path={tmp}/pickle-only"],
         ["{tmp}/pickle-only", "pickle weights only"]),
    Case(R_MODEL, "evaluate-corrupted-model-dir", ["evaluate", "lists", "--model", "{tmp}/corrupted"],
         ["{tmp}/corrupted", "corrupted config.json"]),
    Case(R_MODEL, "evaluate-pickle-only-model", ["evaluate", "lists", "--model", "{tmp}/pickle-only"],
         ["{tmp}/pickle-only", "safetensors only"]),
    Case(R_MODEL, "merge-pickle-only-base", ["merge", "--base", "{tmp}/pickle-only", "--adapter", "{tmp}/no-config",
                                             "-o", "{tmp}/merged"], ["{tmp}/pickle-only", "pickle weights only"]),
    Case(R_MODEL, "train-corrupted-base", ["train", "--data", "{tmp}/good.jsonl", "--base", "{tmp}/corrupted",
                                           "-o", "{tmp}/adapter"], ["{tmp}/corrupted", "corrupted config.json"]),

    Case(R_DATA, "missing-dataset", ["train", "--data", "{tmp}/nonexistent.jsonl", "-o", "{tmp}/adapter"],
         ["dataset file not found", "{tmp}/nonexistent.jsonl"]),
    Case(R_DATA, "empty-dataset", ["train", "--data", "{tmp}/empty.jsonl", "-o", "{tmp}/adapter"],
         ["{tmp}/empty.jsonl", "contains no records"]),
    Case(R_DATA, "malformed-dataset-line", ["train", "--data", "{tmp}/malformed.jsonl", "-o", "{tmp}/adapter"],
         ["{tmp}/malformed.jsonl", "line 2 is not valid JSON"]),
    Case(R_DATA, "dataset-record-missing-field", ["train", "--data", "{tmp}/no-items.jsonl", "-o", "{tmp}/adapter"],
         ["no-items.jsonl line 1", "missing field 'items'"]),
    Case(R_DATA, "empty-lists-file", ["evaluate", "lists", "--model", "{tmp}/no-model", "--lists", "{tmp}/empty.json"],
         ["{tmp}/empty.json", "non-empty JSON list"]),
    Case(R_DATA, "malformed-lists-file",
         ["evaluate", "lists", "--model", "{tmp}/no-model", "--lists", "{tmp}/malformed.json"],
         ["{tmp}/malformed.json", "not valid JSON", "at line 3"]),

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
    Case(R_CRON, "schedule-unreachable-kfp", ["schedule", "--cron", "0 0 3 * * *", "--kfp-host", "http://127.0.0.1:9"],
         ["cannot reach Kubeflow Pipelines at http://127.0.0.1:9"]),
    Case(R_CRON, "run-unreachable-kfp", ["run", "--kfp-host", "http://127.0.0.1:9"],
         ["cannot reach Kubeflow Pipelines at http://127.0.0.1:9"]),

    Case(R_S3, "run-missing-bucket", ["run", "--set", f"storage.models_uri=s3://no-such-bucket-{UID}/models"],
         [f"s3://no-such-bucket-{UID}/models", "does not exist"], s3=True),
    Case(R_S3, "run-unreachable-endpoint", ["run", "--set", f"storage.models_uri=s3://{HALF_BUCKET}/m", "--set",
                                            "storage.endpoint_url=http://127.0.0.1:9"],
         [f"s3://{HALF_BUCKET}/m", "endpoint unreachable after retries"], s3=True),
    Case(R_S3, "evaluate-incomplete-upload", ["evaluate", "lists", "--model", f"models:/{S3HALF}@champion"],
         [f"s3://{HALF_BUCKET}/half", "no complete divtune upload"], s3=True),
    Case(R_S3, "evaluate-missing-bucket", ["evaluate", "lists", "--model", f"models:/{S3NOBUCKET}@champion"],
         [f"s3://no-such-bucket-{UID}/m", "bucket does not exist"], s3=True),
    Case(R_S3, "evaluate-unreachable-endpoint", ["evaluate", "lists", "--model", f"models:/{S3HALF}@champion"],
         [f"s3://{HALF_BUCKET}/half", "endpoint unreachable after retries"], s3=True,
         env={"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}),

    # MLflow's default retries (divtune bounds them: 5 retries, about 30 s in all) - kept here on purpose
    Case(R_MLFLOW, "registry-show-server-down", ["registry", "show", "--name", CHAMP],
         ["MLflow at {dead_mlflow} failed", "Max retries exceeded"], env={"MLFLOW_TRACKING_URI": "{dead_mlflow}"},
         retries=True),
    Case(R_MLFLOW, "run-server-down", ["run", "--set", "train.max_steps=1"],
         ["MLflow at {dead_mlflow} failed"], retries=True,
         env={"MLFLOW_TRACKING_URI": "{dead_mlflow}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}),

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
    Case(R_EVAL, "open-set-missing-prompts", ["evaluate", "open-set", "--model", "{toy}", "--prompts", "{tmp}/nope.json"],
         ["prompts file not found", "{tmp}/nope.json"]),
    Case(R_EVAL, "benchmarks-missing-data", ["evaluate", "benchmarks", "--model", "{toy}", "--data", "{tmp}/nodata",
                                             "--tasks", "gsm8k"], ["{tmp}/nodata"]),
    Case(R_EVAL, "humaneval-without-opt-in", ["evaluate", "benchmarks", "--model", "{toy}", "--data", "{tmp}",
                                              "--tasks", "humaneval"], ["--allow-code-execution"]),
    Case(R_EVAL, "creative-zero-samples", ["evaluate", "creative", "--model", "{toy}", "--samples", "0"],
         ["--samples must be >= 1"]),
]


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


def registry_snapshot() -> dict:
    """Every registered model with its tags, aliases and versions (tags, source, description)."""
    from divtune.registry import tracking

    c = tracking.client()
    snap = {}
    for m in c.search_registered_models(max_results=1000):
        versions = {v.version: {"tags": dict(v.tags), "source": v.source, "description": v.description,
                                "aliases": sorted(v.aliases or [])}
                    for v in c.search_model_versions(f"name = '{m.name}'")}
        snap[m.name] = {"tags": dict(m.tags), "aliases": dict(m.aliases or {}), "versions": versions}
    return snap


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, toy_model_dir, s3_endpoint):
    """Bad files and directories, and a registry holding the models the registry rows point at."""
    import os

    from divtune import storage
    from divtune.data.lists import synthesize_lists, write_jsonl
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

    # registry state the rows must leave untouched (the session's SQLite store, which run_cli inherits)
    model_dir = t / "registered"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    v = reg.register_version(CHAMP, str(model_dir), None, f"rk-{UID}-1", {"divtune.decision": "promote",
                                                                         reg.PREVIOUS_CHAMPION_TAG: ""})
    reg.set_alias(CHAMP, reg.CHALLENGER, v.version)
    reg.set_alias(CHAMP, reg.CHAMPION, v.version)
    v = reg.register_version(NOCHAMP, str(model_dir), None, f"rk-{UID}-2", {"divtune.decision": "reject"})
    reg.set_alias(NOCHAMP, reg.CHALLENGER, v.version)
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                          "AWS_ENDPOINT_URL_S3")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_endpoint})
    try:
        storage.client().create_bucket(Bucket=HALF_BUCKET)
        storage.client().put_object(Bucket=HALF_BUCKET, Key="half/model.safetensors", Body=b"partial")
    finally:
        for k, val in old.items():
            os.environ.pop(k, None) if val is None else os.environ.__setitem__(k, val)
    for name, src in ((S3HALF, f"s3://{HALF_BUCKET}/half"), (S3NOBUCKET, f"s3://no-such-bucket-{UID}/m")):
        v = reg.register_version(name, src, None, f"rk-{UID}-{name}", {"divtune.decision": "promote"})
        reg.set_alias(name, reg.CHAMPION, v.version)
    return {"tmp": str(t), "toy": str(toy_model_dir), "dead_mlflow": f"http://127.0.0.1:{_free_port()}"}


def _fill(s: str, ctx: dict) -> str:
    return s.format(**ctx)


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_row(case: Case, inputs, request):
    if case.s3:
        request.getfixturevalue("aws_env")  # credentials + the moto endpoint for the CLI process
    args = [_fill(a, inputs) for a in case.args]
    env = {k: _fill(v, inputs) for k, v in case.env.items()}
    before = registry_snapshot()
    res = run_cli(*args, env=env)
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stderr[-3000:]}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("divtune: error: ")]
    allowed = ("divtune: retrying MLflow at ",) if case.retries else ()
    noise = [ln for ln in lines if not ln.startswith("divtune: error: ") and not (allowed and ln.startswith(allowed))]
    assert len(errors) == 1 and not noise, f"stderr must be one error line:\n{res.stderr[-3000:]}"
    for needle in case.needles:
        assert _fill(needle, inputs) in errors[0], f"{needle!r} not in {errors[0]!r}"
    assert "Traceback" not in res.stderr
    assert registry_snapshot() == before, "the registry changed"


def test_every_readme_row_has_cases():
    """Each row of the README's bad-input table is covered by a case above (and nothing else is claimed)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    rows = [ln.split("|")[1].strip() for ln in section.splitlines()
            if ln.startswith("| ") and not ln.startswith("| input") and not re.match(r"\|\s*-", ln)]
    covered = {c.row for c in CASES}
    missing = [r for r in rows if r not in covered]
    assert not missing, f"README rows without a test case: {missing}"


# --------------------------------------------------------------------------------------
# the bad inputs that are not CLI commands of their own
# --------------------------------------------------------------------------------------

R_CANDIDATE_NO_EVAL = "candidate without evaluation"


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
