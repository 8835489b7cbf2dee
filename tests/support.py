"""Helpers every test module imports the same way (``from support import ...``); fixtures are in conftest.py.

* :func:`run_cli` runs ``python -m divtune.cli`` as a user would: a fresh interpreter.  Kept for the few
  tests whose point is a fresh process (the bad-input smoke rows, the whole DAG, a SIGKILL).
* :func:`cli_main` runs the same command in this process through ``divtune.cli.main(argv)`` (the ``cli``
  fixture binds it to ``capfd``): seconds instead of an interpreter start and the heavy imports per call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``divtune`` as a user would: a fresh process (with this process's environment plus ``env``)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "divtune.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd or REPO, timeout=timeout)


@contextlib.contextmanager
def env_vars(_reset_mlflow: bool = True, **values: str | None) -> Iterator[None]:
    """Set (None: unset) environment variables for this process, then restore them.

    In-process pitfalls this undoes: MLflow keeps its tracking/registry URI process-global once set (so the
    session store is set again afterwards), and boto3's default session caches the first credentials it
    resolved (dropped when AWS variables change)."""
    old = {k: os.environ.get(k) for k in values}
    aws = any(k.startswith("AWS_") for k in values)

    def _reset_boto() -> None:
        if aws and "boto3" in sys.modules:
            sys.modules["boto3"].DEFAULT_SESSION = None

    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    _reset_boto()
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        _reset_boto()
        if _reset_mlflow and "mlflow" in sys.modules:
            from divtune.registry import tracking

            tracking.setup()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli_main(capfd, *args: str, env: dict[str, str | None] | None = None) -> CliResult:
    """``divtune ARGS`` in this process: ``divtune.cli.main(argv)``'s exit code (argparse's SystemExit for
    usage errors included) and what reached file descriptors 1 and 2 meanwhile.  A command that leaves an
    MLflow run active in the process fails the test (a fresh process would have ended it)."""
    from divtune import cli

    capfd.readouterr()  # what came before is not this command's output
    with env_vars(**(env or {})):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    out, err = capfd.readouterr()
    if "mlflow" in sys.modules:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
            raise AssertionError(f"`divtune {' '.join(map(str, args))}` left an MLflow run active")
    return CliResult(code, out, err)


def one_error_line(res, allowed_prefixes: tuple[str, ...] = ()) -> str:
    """The bad-input contract: exit code 2, no traceback, and stderr is exactly one ``divtune: error: ...``
    line (plus lines starting with ``allowed_prefixes``); returns that line."""
    err = res.stderr
    assert res.returncode == 2, f"exit {res.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("divtune: error: ")]
    noise = [ln for ln in lines if not ln.startswith("divtune: error: ")
             and not (allowed_prefixes and ln.startswith(allowed_prefixes))]
    assert len(errors) == 1 and not noise, f"stderr must be one error line:\n{err[-3000:]}"
    return errors[0]


def registry_snapshot() -> dict:
    """Every registered model of the current store with its tags, aliases and versions (tags, source,
    description, aliases)."""
    from divtune.registry import tracking

    c = tracking.client()
    snap = {}
    for m in c.search_registered_models(max_results=1000):
        versions = {v.version: {"tags": dict(v.tags), "source": v.source, "description": v.description,
                                "aliases": sorted(v.aliases or [])}
                    for v in c.search_model_versions(f"name = '{m.name}'")}
        snap[m.name] = {"tags": dict(m.tags), "aliases": dict(m.aliases or {}), "versions": versions}
    return snap


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: a command that wrote, moved or deleted anything
    there changes it."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def home_sharing_models(tmp_path: Path, session_home: Path) -> Path:
    """A fresh DIVTUNE_HOME (own checkpoints, MLflow store, kfp cache) reusing the session's model cache."""
    home = tmp_path / "home"
    home.mkdir()
    (session_home / "models").mkdir(exist_ok=True)
    (home / "models").symlink_to(session_home / "models", target_is_directory=True)
    return home


def tensor_digests(path: Path) -> dict[str, str]:
    """sha256 of every tensor's bytes in a safetensors file."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            out[k] = hashlib.sha256(f.get_tensor(k).contiguous().numpy().tobytes()).hexdigest()
    return out


#: Values that must never reach a param, tag, artifact or store byte (the DAG runs with them in its environment).
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-4e1d9c",
    "DIVTUNE_API_KEY": "s3cr3t-api-77a0b2",
    "MLFLOW_TRACKING_PASSWORD": "s3cr3t-mlflow-c3f5",
    "HF_TOKEN": "hf_s3cr3tT0ken9981",
}

#: The one whole-DAG configuration: the session's finished run (conftest ``toy_dag``) and the kill-and-resume
#: test train exactly this, so the killed run can be compared step by step with the uninterrupted one.
DAG_MODEL = "dag-model"
DAG_EXPERIMENT = "dag"
DAG_BUCKET = "dag-models"
DAG_CONFIG = {
    "preset": "toy",
    "train": {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "num_generations": 4,
              "per_device_train_batch_size": 8, "lora": {"r": 4, "alpha": 8}},
    "data": {"num_examples": 24},
    "evaluate": {"samples_per_list": 10},
    "registry": {"model_name": DAG_MODEL, "experiment": DAG_EXPERIMENT},
    "storage": {"models_uri": f"s3://{DAG_BUCKET}/m"},
    # Kubernetes Secret references (names only) travel in the config; their values never may
    "cluster": {"secrets": [{"name": "divtune-s3", "keys": {"secret_key": "AWS_SECRET_ACCESS_KEY"}},
                            {"name": "divtune-api", "keys": {"api_key": "DIVTUNE_API_KEY"}}]},
}


def write_dag_config(path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(DAG_CONFIG))
    return path


def dag_env(home: Path, s3_endpoint: str) -> dict[str, str]:
    """The environment of a whole-DAG run in ``home``: its own store, the moto S3 server, the secrets."""
    return {"DIVTUNE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "MLFLOW_TRACKING_USERNAME": "divtune", "AWS_ACCESS_KEY_ID": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": s3_endpoint, **SECRETS}


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def pipeline_tasks(spec: dict) -> dict:
    """Every task of a compiled pipeline spec (a dict), the ones inside sub-DAGs (the exit handler's) included."""
    tasks, stack = {}, [spec["root"]["dag"]["tasks"]]
    while stack:
        for name, task in stack.pop().items():
            tasks[name] = task
            sub = spec["components"].get(task.get("componentRef", {}).get("name", ""), {}).get("dag")
            if sub:
                stack.append(sub["tasks"])
    return tasks
