"""Session fixtures: one divtune home and MLflow store per test session (nothing touches ~/.cache), the toy base
model, a moto S3 server, the tiny trained models and the one finished whole-DAG run every test reads.

Helpers live in support.py (``from support import ...``), not here.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import (DAG_BUCKET, cli_main, dag_env, env_vars, free_port, home_sharing_models, run_cli,
                     write_dag_config)
from support import REPO  # noqa: F401 - tests/test_group_reward_example.py imports it from here

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each (and in every child process)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

#: Suite-wide, for this process and every process it starts: a stopped tracking server fails a request at
#: once (one retry, no backoff) instead of after divtune's default ~30 s policy, which one unit test checks
#: (tests/test_faults.py::test_default_mlflow_retry_policy_and_its_notice).
SESSION_ENV = {"HF_HUB_OFFLINE": "1", "DIVTUNE_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false",
               "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}


#: The costliest modules, costliest first; the rest follow in collection order. ``make test`` runs ``-n 2 --dist
#: loadfile`` (one worker per module), and longest-first keeps the two workers' loads even: the whole-DAG module
#: (the DAG run, then the kill-and-resume run compared with it) is the longest chain and starts at once.
COSTLIEST_FIRST = ("test_dag_run.py", "test_smollm2.py", "test_repro.py", "test_toy_model.py",
                   "test_partitioner_training.py", "test_faults.py", "test_mlflow_server.py", "test_evaluate_stage.py",
                   "test_torchrun.py", "test_novelty.py", "test_serve_champion.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return COSTLIEST_FIRST.index(name) if name in COSTLIEST_FIRST else len(COSTLIEST_FIRST)

    items.sort(key=rank)  # stable: within a rank, the collection order


@pytest.fixture(scope="session", autouse=True)
def divtune_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("divtune-home")
    with env_vars(False, DIVTUNE_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
                  DIVTUNE_RESULTS_DIR=str(home / "results"), **SESSION_ENV):  # results: not the checkout's
        yield home


@pytest.fixture
def cli(capfd):
    """``cli("evaluate", "lists", ...)``: the command through ``divtune.cli.main`` in this process (exit code,
    stdout, stderr); ``env=`` sets variables for that call only."""
    return functools.partial(cli_main, capfd)


@pytest.fixture(scope="session")
def toy_model_dir(divtune_home):
    """The default toy base model, built once per session (cached by content hash)."""
    from divtune.models.toy import ensure_toy_model

    return ensure_toy_model()


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint):
    """A real S3 API (moto server on loopback) for this test and every process it starts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    return s3_endpoint


# --------------------------------------------------------------------------------------
# tiny trained models (2 steps on the toy), trained once per session
# --------------------------------------------------------------------------------------

#: 2 GRPOTrainer steps of 2 prompts x G=8 on 24 synthesized lists, LoRA on the toy. On these seeds the
#: direction is clear (tests/test_toy_model.py): GAPO's held-out JSD about halves, GRPO collapses.
TINY_OVERRIDES = ["train.max_steps=2", "train.save_steps=1", "train.logging_steps=1", "train.num_generations=8",
                  "train.per_device_train_batch_size=16", "train.learning_rate=3e-4", "data.num_examples=24"]


@dataclass(frozen=True)
class TinyModel:
    method: str
    cfg: object  # the PipelineConfig it was trained with
    rows: list  # the training rows
    adapter: Path
    checkpoints: Path  # checkpoint-1, checkpoint-2 (complete, as the Trainer wrote them)
    merged: Path  # the merged, self-contained model directory
    global_step: int


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(directory)`` once per test run. Under xdist the workers share one directory: the first to get the
    lock builds it, the others wait and reuse it."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        d = tmp_path_factory.mktemp(name)
        build(d)
        return d
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # the run's, above every worker's own
    d = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (d / ".built").is_file():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            build(d)
            (d / ".built").write_text("")
    return d


def _tiny(tmp_path_factory, base: Path, method: str, extra: list[str]) -> TinyModel:
    from divtune.config import load_config
    from divtune.data.lists import synthesize_lists

    cfg = load_config("toy", overrides=[*TINY_OVERRIDES, f"train.method={method}", *extra])
    d = cfg.data
    rows = [e.to_row() for e in synthesize_lists(d.num_examples, d.seed, d.categories, d.min_len, d.max_len)]

    def build(root: Path) -> None:
        from divtune.models.merge import merge_lora
        from divtune.train.trainer import train

        res = train(base, rows, cfg.train, root / "adapter", root / "checkpoints", dtype=cfg.model.dtype,
                    system_prompt=d.system_prompt, few_shot=d.few_shot)
        merge_lora(base, res.adapter_dir, root / "merged", dtype=cfg.model.dtype)
        (root / "result.json").write_text(json.dumps({"global_step": res.global_step}))

    root = built_once(tmp_path_factory, f"tiny-{method}", build)
    step = json.loads((root / "result.json").read_text())["global_step"]
    return TinyModel(method, cfg, rows, root / "adapter", root / "checkpoints", root / "merged", step)


@pytest.fixture(scope="session")
def tiny_gapo(tmp_path_factory, toy_model_dir) -> TinyModel:
    """The session's one trained-and-merged GAPO model: 2 steps on the toy."""
    return _tiny(tmp_path_factory, toy_model_dir, "gapo", [])


@pytest.fixture(scope="session")
def tiny_grpo(tmp_path_factory, toy_model_dir) -> TinyModel:
    """GRPO with the validity reward, the same 2 steps, sampled at temperature 2 while training: at 1.0 the toy
    is (nearly) always valid, every group's rewards are equal and GRPO has no signal at all."""
    return _tiny(tmp_path_factory, toy_model_dir, "grpo", ["train.temperature=2.0"])


# --------------------------------------------------------------------------------------
# the one whole-DAG run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DagRun:
    """``divtune run --config dag.yaml --run-key dag-1 --cache`` on the toy (support.DAG_CONFIG) in its own home
    (own MLflow store, checkpoints, kfp cache; the session's model cache), with support.SECRETS in its
    environment; then the same command again (every cacheable step from the KFP cache). Only tests/test_dag_run.py
    reads it, so under ``--dist loadfile`` one worker builds it."""

    home: Path
    config: Path
    key: str
    env: dict
    first: object  # CompletedProcess of the first run
    again: object  # ... and of the cached re-run

    def store(self):
        """This run's MLflow store, home and S3 endpoint for in-process reads, until the block ends."""
        keys = ("DIVTUNE_HOME", "MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL_S3")
        return env_vars(**{k: self.env[k] for k in keys})

    def checkpoint(self, step: int) -> Path:
        [found] = self.home.glob(f"checkpoints/*/checkpoint-{step}")
        return found


@pytest.fixture(scope="session")
def toy_dag(tmp_path_factory, divtune_home, toy_model_dir, s3_endpoint) -> DagRun:
    import boto3

    root = tmp_path_factory.mktemp("toy-dag")
    home = home_sharing_models(root, Path(divtune_home))
    cfg_file = write_dag_config(root / "dag.yaml")
    env = dag_env(home, s3_endpoint)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=DAG_BUCKET)
    cmd = ["run", "--config", str(cfg_file), "--run-key", "dag-1", "--cache"]
    first = run_cli(*cmd, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    again = run_cli(*cmd, env=env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    return DagRun(home, cfg_file, "dag-1", env, first, again)

