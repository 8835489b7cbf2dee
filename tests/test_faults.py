"""Faults and recovery, and the security rules (issue 7), each with a real test.

* training SIGKILLed mid-run: re-running the pipeline resumes from the last complete checkpoint and ends
  where an uninterrupted run ends; secrets in the environment reach no param, tag, artifact or store byte
* the tracking server stopped under the promote stage: retries (visible), a clean failure in tens of seconds,
  nothing half-registered; after a restart on the same store one version with the right aliases
* a promotion interrupted between registering and moving aliases: the re-run completes it, no second version
* an unreachable registry never reads as "absent" (which could register a second version)
* safetensors only (a pickle is never loaded) and ``trust_remote_code`` off unless the config sets it
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import REPO, _free_port, run_cli
from divtune.config import load_config
from divtune.errors import DivtuneError

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-aws-4e1d9c",
    "DIVTUNE_API_KEY": "s3cr3t-api-77a0b2",
    "MLFLOW_TRACKING_PASSWORD": "s3cr3t-mlflow-c3f5",
    "HF_TOKEN": "hf_s3cr3tT0ken9981",
}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _env(**values: str | None):
    """Set (None: unset) environment variables, then restore them and point MLflow back at the session store
    (mlflow.set_tracking_uri is process-global: monkeypatch alone would leave it on this test's store)."""
    from divtune.registry import tracking

    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        tracking.setup()


def _home_sharing_models(tmp_path: Path, session_home: Path) -> Path:
    """A fresh DIVTUNE_HOME (own checkpoints, MLflow store, kfp cache) reusing the session's toy model cache."""
    home = tmp_path / "home"
    home.mkdir()
    (session_home / "models").mkdir(exist_ok=True)
    (home / "models").symlink_to(session_home / "models", target_is_directory=True)
    return home


def _scan_for_secrets(roots: list[Path], secrets: dict[str, str]) -> list[str]:
    """Every file under ``roots`` (the SQLite store itself, MLflow artifacts, kfp outputs), bytes-wise."""
    hits = []
    needles = {k: v.encode() for k, v in secrets.items()}
    for root in roots:
        for p in [root] if root.is_file() else root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                hits += [f"{k} in {p}" for k, v in needles.items() if v in data]
    return hits


def _all_logged_text(client, experiment_ids: list[str], model_names: list[str]) -> str:
    """Params, tags, metrics keys and every text artifact of every run, and every registered version's tags."""
    chunks = []
    for run in client.search_runs(experiment_ids, max_results=1000):
        chunks.append(json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)]))
        stack = [a for a in client.list_artifacts(run.info.run_id)]
        while stack:
            a = stack.pop()
            if a.is_dir:
                stack += client.list_artifacts(run.info.run_id, a.path)
            elif a.path.endswith((".json", ".yaml", ".yml", ".txt", ".jsonl", ".md", ".jinja")):
                chunks.append(Path(client.download_artifacts(run.info.run_id, a.path)).read_text(errors="replace"))
    for name in model_names:
        for v in client.search_model_versions(f"name = '{name}'"):
            chunks.append(json.dumps([dict(v.tags), v.description, v.source]))
    return "\n".join(chunks)


# --------------------------------------------------------------------------------------
# training killed mid-run
# --------------------------------------------------------------------------------------


def test_last_checkpoint_skips_a_half_written_one(tmp_path):
    """A kill while the Trainer saves leaves checkpoint-N without trainer_state.json (written last): resume
    from the newest *complete* checkpoint instead of crashing on the broken one."""
    from divtune.train.trainer import last_checkpoint

    assert last_checkpoint(tmp_path / "none") is None
    for step in (2, 4):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"w")
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    half = tmp_path / "checkpoint-6"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"w")  # killed before trainer_state.json
    torn = tmp_path / "checkpoint-10"
    torn.mkdir()
    (torn / "trainer_state.json").write_text('{"global_step": 1')  # killed mid-write
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


TINY = {"preset": "toy",
        "train": {"max_steps": 6, "save_steps": 2, "logging_steps": 1, "num_generations": 4,
                  "per_device_train_batch_size": 8, "lora": {"r": 4, "alpha": 8}},
        "data": {"num_examples": 24},
        "evaluate": {"samples_per_list": 10},
        "registry": {"model_name": "faults-resume", "experiment": "faults"},
        # Kubernetes Secret references (names only) travel in the config; their values never may
        "cluster": {"secrets": [{"name": "divtune-s3", "keys": {"secret_key": "AWS_SECRET_ACCESS_KEY"}},
                                {"name": "divtune-api", "keys": {"api_key": "DIVTUNE_API_KEY"}}]}}


@pytest.mark.slow
def test_pipeline_killed_mid_training_resumes_from_checkpoint(tmp_path, divtune_home, toy_model_dir):
    """`divtune run` SIGKILLed (the whole process group: kfp.local and the train step) once checkpoint-2 is
    on disk; the same command again resumes training at step 2 (prepare/synthesize come from the KFP cache),
    registers one version, and its held-out metrics match an uninterrupted training of the same config."""
    import yaml

    from divtune import stages
    from divtune.evaluate import suites
    from divtune.data.lists import synthesize_lists
    from divtune.registry import tracking
    from divtune.models.merge import merge_lora
    from divtune.train import trainer

    home = _home_sharing_models(tmp_path, Path(divtune_home))
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(TINY))
    env = {"DIVTUNE_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "MLFLOW_TRACKING_USERNAME": "divtune", **SECRETS}
    cmd = ["run", "--config", str(cfg_file), "--run-key", "killed-1", "--cache"]

    # 1. killed once checkpoint-2 is complete (trainer_state.json is written last)
    log = open(tmp_path / "run1.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "divtune.cli", *cmd], cwd=REPO, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 900
    try:
        while not list(home.glob("checkpoints/*/checkpoint-2/trainer_state.json")):
            assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint-2 within 15 minutes"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    ckpt_root = next(home.glob("checkpoints/*/checkpoint-2")).parent
    assert not (ckpt_root / "checkpoint-6").exists()

    # 2. the same command again: resumes at step 2, completes, registers once
    res = run_cli(*cmd, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "registered: faults-resume version 1" in res.stdout

    with _env(MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"]):
        c = tracking.client()
        parent = tracking.find_pipeline_run("faults", "killed-1")
        assert parent.info.status == "FINISHED"
        children = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        by_stage: dict[str, list] = {}
        for r in children:
            by_stage.setdefault(r.data.tags["divtune.stage"], []).append(r)
        # prepare_base / synthesize_data finished before the kill: the re-run took them from the KFP cache
        assert len(by_stage["prepare_base"]) == 1 and len(by_stage["synthesize_data"]) == 1
        trains = sorted(by_stage["train"], key=lambda r: r.info.start_time)
        assert len(trains) == 2 and trains[0].info.status == "RUNNING"  # the killed one never ended
        resumed = trains[1]
        assert resumed.info.status == "FINISHED"
        assert resumed.data.params["resumed_from"].endswith("checkpoint-2")
        assert resumed.data.metrics["final_train_runtime"] >= 0
        steps = {m.step for k in resumed.data.metrics if not k.startswith("final_")
                 for m in c.get_metric_history(resumed.info.run_id, k)}
        assert steps and min(steps) >= 3 and max(steps) == 6, steps  # steps 1-2 were not trained again
        state = json.loads((ckpt_root / "checkpoint-6" / "trainer_state.json").read_text())
        assert state["global_step"] == 6
        assert sorted({e["step"] for e in state["log_history"] if "loss" in e}) == [1, 2, 3, 4, 5, 6]
        versions = c.search_model_versions("name = 'faults-resume'")
        assert len(versions) == 1
        mv = versions[0]
        assert c.get_model_version_by_alias("faults-resume", "challenger").version == mv.version
        resumed_metrics = {k: parent.data.metrics[f"candidate_{k}"] for k in ("jsd_mean", "invalid_rate")}

        # secrets: not in any param, tag, text artifact, version tag - nor anywhere in the store's bytes
        blob = _all_logged_text(c, [parent.info.experiment_id], ["faults-resume"])
        assert "divtune-s3" in blob  # the Secret *reference* is there (config.yaml) ...
        for k, v in SECRETS.items():
            assert v not in blob, f"{k} was logged"  # ... its value is not
    assert _scan_for_secrets([home / "mlflow.db", home / "mlartifacts", home / "kfp-local"], SECRETS) == []

    # 3. an uninterrupted training of the same config, same base, same data: the same held-out metrics
    cfg = load_config(path=cfg_file)
    d = cfg.data
    rows = [e.to_row() for e in synthesize_lists(d.num_examples, d.seed, d.categories, d.min_len, d.max_len)]
    ref = trainer.train(toy_model_dir, rows, cfg.train, tmp_path / "ref-adapter", tmp_path / "ref-ckpt",
                        dtype=cfg.model.dtype, system_prompt=d.system_prompt, few_shot=d.few_shot)
    assert ref.resumed_from is None and ref.global_step == 6
    merge_lora(toy_model_dir, ref.adapter_dir, tmp_path / "ref-merged", dtype=cfg.model.dtype)
    straight, _ = suites.evaluate_model(cfg, tmp_path / "ref-merged")
    print("resumed", resumed_metrics, "uninterrupted", straight)
    # same seeds (training RNG state is restored from the checkpoint, evaluation is seeded): equal up to noise
    assert abs(resumed_metrics["jsd_mean"] - straight["jsd_mean"]) <= 0.03
    assert abs(resumed_metrics["invalid_rate"] - straight["invalid_rate"]) <= 0.03


# --------------------------------------------------------------------------------------
# the tracking server stopped during a run
# --------------------------------------------------------------------------------------


class MlflowServer:
    """A real `mlflow server` (SQLite backend, proxied local artifacts) that can be stopped and restarted on the
    same port and the same stores."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
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
        # divtune's bounded retry defaults, not a test's
        with _env(MLFLOW_TRACKING_URI=server.url, MLFLOW_HTTP_REQUEST_MAX_RETRIES=None,
                  MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=None):
            yield server
    finally:
        server.stop()


def _promote_in_subprocess(cfg_yaml: str, key: str, cand: Path, base: Path, out: Path):
    """The promote stage as the KFP component runs it: a fresh process calling ``stages.promote``."""
    code = "import sys; from divtune import stages; stages.promote(*sys.argv[1:])"
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", code, cfg_yaml, key, str(cand), str(base), str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    return res, time.time() - t0


def _fake_merged_run(cfg, key: str, tmp_path: Path) -> None:
    """What merge_lora leaves behind, without training: a child run with a model under `model/` and its URI tag."""
    import mlflow

    from divtune import stages
    from divtune.evaluate import suites
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
def test_tracking_server_stopped_before_promote(mlflow_server, tmp_path):
    """Server stopped: the promote stage retries (one notice per retry), fails in tens of seconds with the
    tracking URI in its last line, and registers nothing; server restarted on the same stores: the stage
    completes with exactly one version, challenger and champion on it; a further retry changes nothing."""
    from divtune.registry import models as reg
    from divtune.registry import tracking

    name = f"faults-srv-{uuid.uuid4().hex[:6]}"
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "registry.experiment=faults-srv"])
    key = f"srv-{uuid.uuid4().hex[:8]}"
    _fake_merged_run(cfg, key, tmp_path)
    cand, base = _evals(tmp_path)

    mlflow_server.stop()
    res, took = _promote_in_subprocess(cfg.to_yaml(), key, cand, base, tmp_path / "summary.json")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    retries = [ln for ln in lines if ln.startswith(f"divtune: retrying MLflow at {mlflow_server.url}: ")]
    assert len(retries) >= 5, res.stderr[-3000:]  # divtune's default: 5 retries with backoff
    assert 10 < took < 120, took  # bounded: tens of seconds, not MLflow's ~4 minutes
    assert lines[-1].startswith("mlflow.exceptions.MlflowException: API request to " + mlflow_server.url)
    assert not (tmp_path / "summary.json").exists()

    mlflow_server.start()  # same port, same backend store, same artifact store
    c = tracking.client()
    assert not reg.model_exists(name), "nothing may be registered by a stage that failed"
    assert tracking.find_stage_run("faults-srv", key, "promote") is None

    res, _ = _promote_in_subprocess(cfg.to_yaml(), key, cand, base, tmp_path / "summary.json")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["version"] == "1" and summary["decision"]["promote"] is True
    versions = c.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["1"]
    assert versions[0].tags["divtune.decision"] == "promote" and versions[0].tags[reg.RUN_KEY_TAG] == key
    assert reg.get_alias(name, reg.CHALLENGER).version == "1" and reg.get_alias(name, reg.CHAMPION).version == "1"
    assert tracking.find_pipeline_run("faults-srv", key).info.status == "FINISHED"
    # the model files went through the restarted server's artifact proxy
    got = reg.download_model_version(f"models:/{name}@champion", tmp_path / "dl")
    assert (got / "model.safetensors").read_bytes() == b"w" * 64

    res, _ = _promote_in_subprocess(cfg.to_yaml(), key, cand, base, tmp_path / "again.json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(c.search_model_versions(f"name = '{name}'")) == 1


def test_promotion_interrupted_between_register_and_alias(tmp_path, monkeypatch):
    """The store dies right after the version is created (decision tags and run key are on it already): the
    stage fails, the parent run is FAILED; re-running promote reuses that version, moves both aliases, and the
    parent run ends FINISHED."""
    from mlflow.exceptions import MlflowException

    from divtune import stages
    from divtune.evaluate import suites
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

    with _env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{_free_port()}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"):
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
    from divtune import stages
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
