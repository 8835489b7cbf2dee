"""MLflow tracking: one parent run per pipeline run, one child run per stage.

Stages run in separate processes (KFP components), so the parent run is found by a tag
(``divtune.run_key``) rather than held in memory.  The tracking store is
``MLFLOW_TRACKING_URI`` or the embedded SQLite store (see :mod:`divtune.paths`); the model
registry lives in the same store.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from divtune import paths
from divtune.errors import DivtuneError, one_line

RUN_KEY_TAG = "divtune.run_key"
STAGE_TAG = "divtune.stage"
PARENT_TAG = "mlflow.parentRunId"

log = logging.getLogger(__name__)


class TrackingError(DivtuneError):
    """The tracking server (or the registry behind it) failed, after MLflow's own retries."""


def tracking_failure(exc: BaseException) -> TrackingError | None:
    """An MLflow failure that reached the CLI, as a one-line error naming the tracking store; None for anything
    else (a bug keeps its traceback).

    Classified by what failed: the tracking server did not answer (a connection error, a timeout, MLflow's
    "API request ... failed" after its retries), or MLflow refused the request (its own message, which names
    the problem).  Errors of other services (an evaluation endpoint, S3, KFP) are classified where they arise.
    """
    try:
        import requests
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    uri = paths.tracking_uri()
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)) or (
            isinstance(exc, MlflowException) and "API request to" in str(exc)):
        return TrackingError(f"MLflow at {uri} failed: {one_line(exc)}")
    if isinstance(exc, MlflowException):
        return TrackingError(f"MLflow (tracking store {uri}) refused the request: {one_line(exc)}")
    return None

_EXPORTED_REGISTRY = "_DIVTUNE_EXPORTED_REGISTRY_URI"
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}  # per request: a server that never answers is bounded


def setup() -> str:
    """Point MLflow at the configured store (creating the embedded one's folder); return the URI."""
    import mlflow

    # A stopped tracking server fails a call in about half a minute instead of MLflow's ~4 minutes
    # (7 retries, backoff factor 2): 5 retries, backoff 0, 2, 4, 8, 16 s.  The environment overrides.
    for k, v in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(k, v)
    uri = paths.tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    if urlparse(uri).scheme in ("http", "https"):
        _announce_retries()
    # mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI to os.environ (and so to every child process): a
    # value we exported ourselves is not a user's choice and must not pin the registry once the tracking URI moves
    reg = os.environ.get("MLFLOW_REGISTRY_URI")
    if not reg or reg == os.environ.get(_EXPORTED_REGISTRY):
        reg = uri
        os.environ[_EXPORTED_REGISTRY] = uri
    else:  # the user's own registry URI
        os.environ.pop(_EXPORTED_REGISTRY, None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(reg)
    return uri


class _RetryNotice(logging.Handler):
    """urllib3 retries MLflow's HTTP requests silently (its logger has a NullHandler): one short
    stderr line per retry, so a stage waiting on a stopped tracking server says why."""

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Retrying"):
            return
        try:
            retry, err, url = record.args  # "Retrying (%r) after connection broken by '%r': %s"
            what = f"{str(url).split('?')[0]} failed ({type(err).__name__}); {retry.total} retries left"
        except (TypeError, ValueError, AttributeError):
            what = " ".join(record.getMessage().split())[:200]
        import sys

        print(f"divtune: retrying MLflow at {paths.tracking_uri()}: {what}", file=sys.stderr, flush=True)


def _announce_retries() -> None:
    lg = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(h, _RetryNotice) for h in lg.handlers):
        lg.addHandler(_RetryNotice(logging.WARNING))


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :])


def client():
    from mlflow.tracking import MlflowClient

    setup()
    return MlflowClient()


def experiment_id(name: str) -> str:
    """Get or create the experiment; on a SQLite store its artifacts sit beside the database."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    db = _sqlite_path(paths.tracking_uri())
    if db is not None:
        location = (db.parent / "mlartifacts" / name).resolve().as_uri()
    return c.create_experiment(name, artifact_location=location)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def find_pipeline_run(experiment: str, run_key: str):
    c = client()
    exp_id = experiment_id(experiment)
    runs = c.search_runs(
        [exp_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and tags.`{STAGE_TAG}` = 'pipeline'",
        max_results=1,
    )
    return runs[0] if runs else None


def find_stage_run(experiment: str, run_key: str, stage: str):
    """The most recent child run of ``stage`` in pipeline run ``run_key`` (finished ones first)."""
    c = client()
    runs = c.search_runs(
        [experiment_id(experiment)],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and tags.`{STAGE_TAG}` = '{stage}'",
        order_by=["attributes.start_time DESC"],
    )
    done = [r for r in runs if r.info.status == "FINISHED"]
    return (done or runs or [None])[0]


def fail_running_stage_runs(experiment: str, run_key: str) -> list[str]:
    """Mark the stage runs of ``run_key`` still RUNNING as FAILED (their step was killed); returns their stages."""
    c = client()
    runs = c.search_runs(
        [experiment_id(experiment)],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'RUNNING'",
    )
    stages = []
    for r in runs:
        if r.data.tags.get(STAGE_TAG) not in (None, "pipeline"):
            c.set_terminated(r.info.run_id, "FAILED")
            stages.append(r.data.tags[STAGE_TAG])
    return stages


def open_pipeline_run(experiment: str, run_key: str, run_name: str, params: Mapping[str, Any], config_yaml: str) -> str:
    """Find or create the parent run of pipeline run ``run_key``; return its run id."""
    existing = find_pipeline_run(experiment, run_key)
    if existing is not None:  # a re-run of the same pipeline run (after a failure, or cached): running again
        if existing.info.status != "RUNNING":
            client().update_run(existing.info.run_id, status="RUNNING")
        return existing.info.run_id
    c = client()
    run = c.create_run(
        experiment_id(experiment),
        run_name=run_name,
        tags={RUN_KEY_TAG: run_key, STAGE_TAG: "pipeline"},
    )
    rid = run.info.run_id
    flat = flatten(params)
    for k, v in flat.items():
        c.log_param(rid, k, "" if v is None else str(v)[:6000])
    c.log_text(rid, config_yaml, "config.yaml")
    return rid


def close_pipeline_run(experiment: str, run_key: str, status: str = "FINISHED") -> None:
    run = find_pipeline_run(experiment, run_key)
    if run is not None and run.info.status == "RUNNING":
        client().set_terminated(run.info.run_id, status)


@contextlib.contextmanager
def stage_run(experiment: str, run_key: str, stage: str, params: Mapping[str, Any] | None = None) -> Iterator[str]:
    """A child run of the pipeline run for one stage, active for ``mlflow.log_*`` calls.

    A failing stage marks its child run and the parent run FAILED and re-raises.
    """
    import mlflow

    parent = find_pipeline_run(experiment, run_key)
    if parent is None:
        raise RuntimeError(f"no MLflow pipeline run with {RUN_KEY_TAG}={run_key!r}; open it first")
    c = client()
    child = c.create_run(
        parent.info.experiment_id,
        run_name=stage,
        tags={PARENT_TAG: parent.info.run_id, RUN_KEY_TAG: run_key, STAGE_TAG: stage},
    )
    rid = child.info.run_id
    for k, v in flatten(params or {}).items():
        c.log_param(rid, k, "" if v is None else str(v)[:6000])
    mlflow.start_run(run_id=rid)
    try:
        yield rid
    except BaseException:
        # best effort: with the tracking server down these fail too, and the stage's own error is what counts
        with contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
        with contextlib.suppress(Exception):
            c.set_terminated(parent.info.run_id, "FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def ui_command() -> str:
    """The command that opens the MLflow UI on the current store."""
    uri = paths.tracking_uri()
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {uri}"
    return f".venv/bin/mlflow ui --backend-store-uri {uri} --port 5000"
