"""Faults and recovery, and the security rules, each with a real test (the DAG killed mid-training and the
secrets scan of a finished run: tests/test_dag_run.py).

* the tracking server stopped under the promote stage: retries (visible), a clean failure, nothing
  half-registered; after a restart on the same store one version with the right aliases; divtune's default
  retry policy (the rest of the suite runs with one retry and no backoff, conftest.py)
* a promotion interrupted between registering and moving aliases: the re-run completes it, no second version
* an unreachable registry never reads as "absent" (which could register a second version)
* safetensors only (a pickle is never loaded) and ``trust_remote_code`` off unless the config sets it
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from divtune.config import load_config
from divtune.errors import DivtuneError
from support import env_vars, free_port, read_json


# --------------------------------------------------------------------------------------
# the tracking server stopped during a run
# --------------------------------------------------------------------------------------


class MlflowServer:
    """A real `mlflow server` (SQLite backend, proxied local artifacts) that can be stopped and restarted on the
    same port and the same stores."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}", "--serve-artifacts",
             "--artifacts-destination", (self.root / "artifacts").as_uri(), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        self.stop()
        pytest.fail("mlflow server did not start: " + (self.root / "server.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    try:
        with env_vars(MLFLOW_TRACKING_URI=server.url):  # retries: the session's, one without backoff (conftest)
            yield server
    finally:
        server.stop()


def _fake_merged_run(cfg, key: str, tmp_path: Path) -> None:
    """What merge_lora leaves behind, without training: a child run with a model under `model/` and its URI tag."""
    import mlflow

    from divtune import stages
    from divtune.registry import tracking

    stages.open_run(cfg.to_yaml(), key)
    model = tmp_path / "merged"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    (model / "model.safetensors").write_bytes(b"w" * 64)
    with tracking.stage_run(cfg.registry.experiment, key, "merge_lora") as rid:
        mlflow.log_artifacts(str(model), "model")
        mlflow.set_tag("divtune.model_uri", f"{mlflow.get_run(rid).info.artifact_uri}/model")


def _evals(tmp_path: Path) -> tuple[Path, Path]:
    cand, base = tmp_path / "cand.json", tmp_path / "base.json"
    cand.write_text(json.dumps({"metrics": {"jsd_mean": 0.2, "invalid_rate": 0.01, "entropy_mean": 2.0}}))
    base.write_text(json.dumps({"metrics": {"jsd_mean": 0.35, "invalid_rate": 0.04, "entropy_mean": 1.8}}))
    return cand, base


@pytest.mark.slow
def test_tracking_server_stopped_before_promote(mlflow_server, tmp_path, capfd):
    """Server stopped: the promote stage retries (one notice per retry MLflow makes), fails with the tracking
    URI in its error, and registers nothing; server restarted on the same stores: the stage completes with
    exactly one version, challenger and champion on it; a further retry changes nothing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from divtune import stages
    from divtune.registry import models as reg
    from divtune.registry import tracking

    name = f"faults-srv-{uuid.uuid4().hex[:6]}"
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "registry.experiment=faults-srv"])
    key = f"srv-{uuid.uuid4().hex[:8]}"
    _fake_merged_run(cfg, key, tmp_path)
    cand, base = _evals(tmp_path)

    def promote(out: Path):
        return stages.promote(cfg.to_yaml(), key, str(cand), str(base), str(out))

    mlflow_server.stop()
    capfd.readouterr()
    with pytest.raises(MlflowException, match=f"API request to {mlflow_server.url}"):
        promote(tmp_path / "summary.json")
    err = capfd.readouterr().err
    notices = [ln for ln in err.splitlines() if ln.startswith(f"divtune: retrying MLflow at {mlflow_server.url}: ")]
    retries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert len(notices) == retries and notices[-1].endswith("0 retries left"), err[-3000:]
    assert not (tmp_path / "summary.json").exists()
    assert mlflow.active_run() is None

    mlflow_server.start()  # same port, same backend store, same artifact store
    c = tracking.client()
    assert not reg.model_exists(name), "nothing may be registered by a stage that failed"
    assert tracking.find_stage_run("faults-srv", key, "promote") is None

    summary = promote(tmp_path / "summary.json")
    assert summary == read_json(tmp_path / "summary.json")
    assert summary["version"] == "1" and summary["decision"]["promote"] is True
    versions = c.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"]
    assert versions[0].tags["divtune.decision"] == "promote" and versions[0].tags[reg.RUN_KEY_TAG] == key
    assert reg.get_alias(name, reg.CHALLENGER).version == "1" and reg.get_alias(name, reg.CHAMPION).version == "1"
    assert tracking.find_pipeline_run("faults-srv", key).info.status == "FINISHED"
    # the model files went through the restarted server's artifact proxy
    got = reg.download_model_version(f"models:/{name}@champion", tmp_path / "dl")
    assert (got / "model.safetensors").read_bytes() == b"w" * 64

    assert promote(tmp_path / "again.json")["version"] == "1"
    assert len(c.search_model_versions(f"name = '{name}'")) == 1


def test_default_mlflow_retry_policy_and_its_notice(monkeypatch, capsys):
    """Without the environment saying otherwise, divtune bounds MLflow's HTTP retries (5, backoff factor 1:
    tens of seconds in all, not MLflow's ~4 minutes), and urllib3's silent retries become one stderr line each.
    The rest of the suite runs with one retry and no backoff (conftest.py), so this is the one check."""
    from urllib3.exceptions import ProtocolError
    from urllib3.util.retry import Retry

    from divtune.registry import tracking

    for k in tracking.HTTP_RETRY_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    with env_vars(MLFLOW_TRACKING_URI=url):
        tracking.setup()
        assert {k: os.environ[k] for k in tracking.HTTP_RETRY_DEFAULTS} == tracking.HTTP_RETRY_DEFAULTS
        from mlflow.environment_variables import (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
                                                  MLFLOW_HTTP_REQUEST_BACKOFF_JITTER, MLFLOW_HTTP_REQUEST_MAX_RETRIES)
        from mlflow.utils.request_utils import _get_request_session

        # the retry MLflow builds from them: the waits it would sleep between attempts, computed, not waited
        retry = _get_request_session(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
                                     0.0, (), True, True).get_adapter(url).max_retries
        assert retry.total == 5
        waits = []
        while True:
            try:
                retry = retry.increment("GET", "/api", error=ProtocolError("connection refused"))
            except Exception:  # noqa: BLE001 - urllib3's MaxRetryError: retries exhausted
                break
            waits.append(retry.get_backoff_time())
        assert len(waits) == 5 and 10 < sum(waits) + 5 * MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get() < 120, waits

        # one notice per retry, naming the store, the request (without its query) and what is left
        capsys.readouterr()
        lg = logging.getLogger("urllib3.connectionpool")
        lg.warning("Retrying (%r) after connection broken by '%r': %s", Retry(total=3),
                   ProtocolError("connection refused"), "/api/2.0/mlflow/experiments/get?experiment_id=1")
        lg.warning("Connection pool is full, discarding connection: %s", "127.0.0.1")  # not a retry: nothing
        assert capsys.readouterr().err.splitlines() == [
            f"divtune: retrying MLflow at {url}: /api/2.0/mlflow/experiments/get failed (ProtocolError); "
            "3 retries left"]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # the environment overrides the defaults
    tracking.setup()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


def test_promotion_interrupted_between_register_and_alias(tmp_path, monkeypatch):
    """The store dies right after the version is created (decision tags and run key are on it already): the
    stage fails, the parent run is FAILED; re-running promote reuses that version, moves both aliases, and the
    parent run ends FINISHED."""
    from mlflow.exceptions import MlflowException

    from divtune import stages
    from divtune.promotion import gate
    from divtune.registry import models as reg
    from divtune.registry import tracking

    name = f"faults-alias-{uuid.uuid4().hex[:6]}"
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "registry.experiment=faults-alias"])
    key = f"alias-{uuid.uuid4().hex[:8]}"
    _fake_merged_run(cfg, key, tmp_path)
    cand, base = _evals(tmp_path)
    real = reg.set_alias

    def dies(*a, **k):
        raise MlflowException("connection reset by peer (tracking server went away)")

    monkeypatch.setattr(reg, "set_alias", dies)
    with pytest.raises(MlflowException):
        stages.promote(cfg.to_yaml(), key, str(cand), str(base), str(tmp_path / "s.json"))
    c = tracking.client()
    [mv] = c.search_model_versions(f"name = '{name}'")
    assert mv.tags[reg.RUN_KEY_TAG] == key and gate.decision_from_tags(mv.tags).promote
    assert reg.get_alias(name, reg.CHAMPION) is None and reg.get_alias(name, reg.CHALLENGER) is None
    assert tracking.find_pipeline_run("faults-alias", key).info.status == "FAILED"

    monkeypatch.setattr(reg, "set_alias", real)
    stages.open_run(cfg.to_yaml(), key)  # the pipeline re-run starts with its open-run step
    summary = stages.promote(cfg.to_yaml(), key, str(cand), str(base), str(tmp_path / "s.json"))
    assert summary["version"] == str(mv.version) and summary["aliases"] == ["challenger", "champion"]
    assert len(c.search_model_versions(f"name = '{name}'")) == 1
    assert reg.get_alias(name, reg.CHAMPION).version == mv.version
    assert tracking.find_pipeline_run("faults-alias", key).info.status == "FINISHED"


def test_unreachable_registry_is_an_error_not_absent():
    """A store that does not answer must not read as "no such version" (promotion would then register a
    second one) nor as "no such model" (a typo message for a network failure)."""
    from mlflow.exceptions import MlflowException

    from divtune.registry import models as reg

    with env_vars(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"):
        for call in (lambda: reg.version_for_run_key("m", "rk"), lambda: reg.get_alias("m", "champion"),
                     lambda: reg.model_exists("m"), lambda: reg.lookup("models:/m@champion")):
            with pytest.raises(MlflowException, match="API request to http://127.0.0.1"):
                call()


# --------------------------------------------------------------------------------------
# security: safetensors only, trust_remote_code opt-in
# --------------------------------------------------------------------------------------


def _pickle_only_model(tmp_path: Path) -> Path:
    d = tmp_path / "pickle-only"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "qwen2"}')
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    return d


def test_pickle_only_weights_are_refused_by_every_loader(tmp_path):
    from divtune.evaluate import suites
    from divtune.evaluate.generation import HFGenerator
    from divtune.models.merge import merge_lora
    from divtune.train import trainer
    from divtune.models.loading import load_model_and_tokenizer

    d = _pickle_only_model(tmp_path)
    cfg = load_config("toy")
    calls = [
        lambda: load_model_and_tokenizer(d),
        lambda: HFGenerator(d),
        lambda: suites.evaluate_model(cfg, d),
        lambda: merge_lora(d, tmp_path / "adapter", tmp_path / "out"),
        lambda: trainer.train(d, [{"prompt": "p", "group_id": 0, "items": ["a", "b"]}], cfg.train,
                              tmp_path / "a", tmp_path / "ckpt"),
    ]
    for call in calls:
        with pytest.raises(DivtuneError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and str(d) in msg and "safetensors only" in msg
    assert not (tmp_path / "out").exists()


def test_weights_load_without_any_unpickling(toy_model_dir, tmp_path, monkeypatch):
    """A model directory with both a pickle and safetensors weights loads the safetensors; torch.load and
    pickle are never called (they raise here)."""
    import pickle
    import shutil

    import torch

    from divtune.models.loading import load_model_and_tokenizer

    d = tmp_path / "both"
    shutil.copytree(toy_model_dir, d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # would be a pickle bomb in the wild

    def forbidden(*a, **k):
        raise AssertionError("a pickle load of model weights")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model, tok = load_model_and_tokenizer(d, device="cpu")
    assert model.num_parameters() > 0 and tok("a").input_ids


class _Stop(Exception):
    pass


@pytest.mark.parametrize("configured", [False, True])
def test_trust_remote_code_only_when_the_config_says_so(configured, toy_model_dir, tmp_path, monkeypatch):
    """train, merge and evaluate stages pass ``model.trust_remote_code`` (default False) to every
    ``from_pretrained``; nothing else turns it on."""
    import transformers

    from divtune import stages
    from divtune.evaluate import suites
    from divtune.data.lists import synthesize_lists, write_jsonl

    assert load_config("toy").model.trust_remote_code is False
    seen: list[tuple[str, object]] = []

    def recorder(kind):
        def from_pretrained(*a, **k):
            seen.append((kind, k.get("trust_remote_code", "<absent>")))
            raise _Stop

        return from_pretrained

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recorder("model"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", recorder("tokenizer"))
    name = f"trc-{uuid.uuid4().hex[:6]}"
    cfg = load_config("toy", overrides=[f"model.trust_remote_code={str(configured).lower()}",
                                        f"registry.model_name={name}", "registry.experiment=faults-trc"])
    key = f"trc-{uuid.uuid4().hex[:8]}"
    stages.open_run(cfg.to_yaml(), key)
    data = write_jsonl(synthesize_lists(4, 0), tmp_path / "d.jsonl")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"w")
    for call in (lambda: stages.train(cfg.to_yaml(), key, str(toy_model_dir), str(data), str(tmp_path / "a")),
                 lambda: stages.merge(cfg.to_yaml(), key, str(toy_model_dir), str(adapter), str(tmp_path / "m")),
                 lambda: suites.evaluate_model(cfg, toy_model_dir)):
        with pytest.raises(_Stop):
            call()
    assert [k for k, _ in seen] == ["model"] * 3
    assert all(v is configured for _, v in seen), seen
