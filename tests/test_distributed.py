"""Multi-GPU training through a Kubeflow Trainer TrainJob: the pipeline step against a fake Kubernetes API
(the body it submits, Complete / Failed / timeout, API errors), and the compiled pipeline selecting it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from divtune.config import load_config
from divtune.errors import ConfigError
from divtune.train import distributed as dist
from divtune.train.distributed import TrainJobError
from divtune_kfp.components import trainjob_step as step
from support import pipeline_tasks


def _api_exception(status: int, message: str = ""):
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason={403: "Forbidden", 404: "Not Found", 409: "Conflict",
                                              422: "Unprocessable Entity"}.get(status, "Error"))
    exc.body = json.dumps({"kind": "Status", "message": message or f"status {status}"})
    return exc


def _cond(type_: str, reason: str = "Done", message: str = "") -> dict:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


class FakeCustomObjects:
    """The three ``CustomObjectsApi`` calls the step makes; ``states``: the status of successive GETs."""

    def __init__(self, states=(), *, create_error=None, get_errors=(), on_get=None):
        self.states = list(states)
        self.create_error = create_error
        self.get_errors = list(get_errors)
        self.on_get = on_get
        self.created: list[tuple[tuple, dict]] = []
        self.deleted: list[tuple] = []
        self.gets = 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        self.created.append(((group, version, namespace, plural), copy.deepcopy(body)))
        if self.create_error is not None:
            raise self.create_error
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        assert (group, version, plural) == (dist.GROUP, dist.VERSION, dist.PLURAL)
        self.gets += 1
        if self.get_errors:
            err = self.get_errors.pop(0)
            if err is not None:
                raise err
        status = self.states.pop(0) if len(self.states) > 1 else (self.states[0] if self.states else {})
        if self.on_get:
            self.on_get(self.gets, status)
        return {"apiVersion": f"{group}/{version}", "kind": "TrainJob",
                "metadata": {"name": name, "namespace": namespace}, "status": status}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self.deleted.append((namespace, name))


RUNNING: dict = {"conditions": []}
COMPLETE = {"conditions": [_cond("Complete", "JobsCompleted", "TrainJob completed")]}
FAILED = {"conditions": [_cond("Failed", "DeadlineExceeded", "TrainJob exceeded its\nactive deadline")]}


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def _cfg(tmp_path, *extra):
    return load_config("toy", overrides=[
        "cluster.train_nodes=2", "cluster.train_gpus=4", "cluster.cache_pvc=divtune-cache",
        f"cluster.cache_mount_path={tmp_path / 'pvc'}", "cluster.trainjob_timeout_s=3600",
        "registry.experiment=trainjob-test", *extra])


def _inputs(tmp_path):
    base = tmp_path / "artifacts" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "qwen2"}')
    (base / "model.safetensors").write_bytes(b"weights")
    data = tmp_path / "artifacts" / "data.jsonl"
    data.write_text('{"prompt": "p", "group_id": 0, "items": ["a", "b"]}\n')
    return base, data


def _finish_training(output: Path, step: int):
    """What the TrainJob's rank 0 writes on the PVC: the adapter and its checkpoints."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "adapter_config.json").write_text('{"r": 8}')
    (output / "adapter_model.safetensors").write_bytes(b"lora")
    ck = output.with_name(output.name + "-checkpoints") / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_step_submits_the_trainjob_waits_for_complete_and_collects_the_adapter(tmp_path):
    from test_crds import crd_errors

    from divtune import stages
    from divtune.registry import tracking

    cfg = _cfg(tmp_path)
    key = "run-Trainjob_1"
    stages.open_run(cfg.to_yaml(), key)
    base, data = _inputs(tmp_path)
    name = dist.trainjob_name(key, cfg)
    output = tmp_path / "pvc" / "trainjobs" / name / "adapter"

    def on_get(n, status):
        if status is COMPLETE:
            _finish_training(output, 7)

    api = FakeCustomObjects([RUNNING, RUNNING, COMPLETE], on_get=on_get)
    clock = FakeClock()
    out = tmp_path / "adapter-artifact"
    info = step.train_with_trainjob(cfg.to_yaml(), key, str(base), str(data), str(out), api=api,
                                    namespace="kubeflow-user", image="registry.local/divtune-trainer:1",
                                    poll_s=30, sleep=clock.sleep, clock=clock)
    # one TrainJob created, in the right API, polled until Complete
    assert len(api.created) == 1 and api.gets == 3 and clock.sleeps == [30, 30] and not api.deleted
    (group, version, ns, plural), body = api.created[0]
    assert (group, version, ns, plural) == ("trainer.kubeflow.org", "v1alpha1", "kubeflow-user", "trainjobs")
    assert crd_errors(body) == []
    assert body["metadata"]["name"] == name and len(name) <= 63 and name.startswith("divtune-run-trainjob-1-")
    t = body["spec"]["trainer"]
    assert t["image"] == "registry.local/divtune-trainer:1" and t["numNodes"] == 2 and t["numProcPerNode"] == 4
    assert t["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 4}}
    assert body["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    args = t["args"]
    staged = tmp_path / "pvc" / "trainjobs" / name
    assert args[args.index("--data") + 1] == str(staged / "data.jsonl")
    assert args[args.index("--base") + 1] == str(staged / "base")  # not on the PVC yet: staged there
    assert args[args.index("-o") + 1] == str(output)
    assert (staged / "data.jsonl").read_bytes() == data.read_bytes()
    assert (staged / "base" / "model.safetensors").read_bytes() == b"weights"
    env = {e["name"]: e.get("value") for e in t["env"]}
    assert env["DIVTUNE_HOME"] == str(tmp_path / "pvc")
    train_run = tracking.find_stage_run("trainjob-test", key, "train")
    assert env["MLFLOW_RUN_ID"] == train_run.info.run_id and train_run.info.status == "FINISHED"
    assert train_run.data.params["distributed.trainjob"] == f"kubeflow-user/{name}"
    # the adapter comes back as the step's output; the step returns where it lives on the PVC
    assert (out / "adapter_model.safetensors").read_bytes() == b"lora"
    assert info["output_path"] == str(output) and info["global_step"] == 7 and info["namespace"] == "kubeflow-user"


def test_retried_step_attaches_to_its_existing_trainjob(tmp_path):
    cfg = _cfg(tmp_path)
    m = dist.trainjob_manifest(cfg, name="divtune-x-1", namespace="ns", image="i", data_path="/d", base_path="/b",
                               output_path="/o", num_nodes=2, gpus_per_node=4)
    api = FakeCustomObjects([COMPLETE], create_error=_api_exception(409, "already exists"))
    obj = dist.run_trainjob(api, m, timeout_s=60, sleep=lambda s: None)
    assert dist.trainjob_state(obj) == "Complete" and len(api.created) == 1
    assert dist.trainjob_name("k", cfg) == dist.trainjob_name("k", cfg) != dist.trainjob_name("k2", cfg)


def test_failed_trainjob_is_one_line_with_reason(tmp_path):
    api = FakeCustomObjects([RUNNING, FAILED])
    clock = FakeClock()
    with pytest.raises(TrainJobError) as ei:
        dist.wait_for_trainjob(api, "divtune-x-1", "ns", timeout_s=600, poll_s=5, sleep=clock.sleep, clock=clock)
    msg = str(ei.value)
    assert msg == "TrainJob ns/divtune-x-1 failed: DeadlineExceeded: TrainJob exceeded its active deadline"
    assert "\n" not in msg and not api.deleted


def test_timeout_deletes_the_trainjob_and_says_so(tmp_path):
    api = FakeCustomObjects([RUNNING])
    clock = FakeClock()
    with pytest.raises(TrainJobError, match=r"did not finish within 100 s \(last state: Running\); deleted it"):
        dist.wait_for_trainjob(api, "divtune-x-1", "ns", timeout_s=100, poll_s=30, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [30, 30, 30, 10] and api.deleted == [("ns", "divtune-x-1")]
    api = FakeCustomObjects([RUNNING])
    clock = FakeClock()
    with pytest.raises(TrainJobError, match="it was left running"):
        dist.wait_for_trainjob(api, "j", "ns", timeout_s=10, poll_s=30, delete_on_timeout=False,
                               sleep=clock.sleep, clock=clock)
    assert not api.deleted


def test_the_whole_step_fails_cleanly_when_the_trainjob_fails(tmp_path):
    from divtune import stages
    from divtune.registry import tracking

    cfg = _cfg(tmp_path)
    stages.open_run(cfg.to_yaml(), "run-fail")
    base, data = _inputs(tmp_path)
    api = FakeCustomObjects([FAILED])
    with pytest.raises(TrainJobError, match="failed: DeadlineExceeded"):
        step.train_with_trainjob(cfg.to_yaml(), "run-fail", str(base), str(data), str(tmp_path / "out"), api=api,
                                 namespace="ns", image="i", sleep=lambda s: None)
    assert tracking.find_stage_run("trainjob-test", "run-fail", "train").info.status == "FAILED"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("status,needle", [
    (403, "needs create/get/delete on trainjobs.trainer.kubeflow.org"),
    (404, "TrainJob API is not installed"),
    (422, "rejected by the API server: spec.trainer.numNodes: Invalid value"),
])
def test_create_errors_are_explained(tmp_path, status, needle):
    m = dist.trainjob_manifest(_cfg(tmp_path), name="j", namespace="ns", image="i", data_path="/d", base_path="/b",
                               output_path="/o")
    api = FakeCustomObjects(create_error=_api_exception(status, "spec.trainer.numNodes: Invalid value"))
    with pytest.raises(TrainJobError, match=needle):
        dist.run_trainjob(api, m, timeout_s=60, sleep=lambda s: None)
    assert api.gets == 0


def test_transient_read_errors_are_retried_a_vanished_job_is_not():
    api = FakeCustomObjects([COMPLETE], get_errors=[_api_exception(503), _api_exception(500), None])
    obj = dist.wait_for_trainjob(api, "j", "ns", timeout_s=600, poll_s=1, sleep=lambda s: None)
    assert dist.trainjob_state(obj) == "Complete" and api.gets == 3
    api = FakeCustomObjects([RUNNING], get_errors=[_api_exception(503)] * 5)
    with pytest.raises(TrainJobError, match="cannot read TrainJob ns/j: status 503"):
        dist.wait_for_trainjob(api, "j", "ns", timeout_s=600, poll_s=1, sleep=lambda s: None)
    api = FakeCustomObjects([RUNNING], get_errors=[_api_exception(404)])
    with pytest.raises(TrainJobError, match="disappeared"):
        dist.wait_for_trainjob(api, "j", "ns", timeout_s=600, poll_s=1, sleep=lambda s: None)


def test_trainjob_config_is_validated():
    with pytest.raises(ConfigError, match="needs cluster.cache_pvc"):
        load_config("toy", overrides=["cluster.train_nodes=2", "cluster.train_gpus=8"])
    with pytest.raises(ConfigError, match="needs cluster.train_gpus >= 1"):
        load_config("toy", overrides=["cluster.train_distributed=trainjob", "cluster.cache_pvc=c"])
    with pytest.raises(ConfigError, match="cluster.train_distributed must be one of"):
        load_config("toy", overrides=["cluster.train_distributed=mpi"])
    with pytest.raises(ConfigError, match="cluster.train_nodes"):
        load_config("toy", overrides=["cluster.train_nodes=0"])
    assert not load_config("qwen2.5-7b-gapo").cluster.uses_trainjob  # one GPU: the pipeline's own step
    assert load_config("qwen2.5-32b-gapo").cluster.uses_trainjob  # 4 GPUs: a sharded TrainJob (docs/memory.md)


@pytest.mark.parametrize("overrides", [["cluster.train_nodes=2"], ["cluster.train_distributed=trainjob"]])
def test_compiled_pipeline_trains_through_the_trainjob_component_when_selected(tmp_path, overrides):
    from divtune_kfp.pipelines.local import compile_pipeline

    cfg = load_config("qwen2.5-7b-gapo", overrides=overrides)
    out = compile_pipeline(cfg, tmp_path / "p.yaml")
    spec, platform = yaml.safe_load_all(out.read_text())
    tasks = pipeline_tasks(spec)
    assert "train-distributed" in tasks and "train" not in tasks
    assert tasks["merge-lora"]["inputs"]["artifacts"]["adapter"]["taskOutputArtifact"]["producerTask"] == \
        "train-distributed"
    ex = spec["deploymentSpec"]["executors"]["exec-train-distributed"]["container"]
    assert "train_with_trainjob" in " ".join(ex["command"] + ex.get("args", []))
    assert ex["image"] == "ghcr.io/divtune/divtune-trainer:0.1.0"
    assert "accelerator" not in ex.get("resources", {})  # the GPUs are the TrainJob's, not this pod's
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-distributed"]
    assert k8s["pvcMount"][0]["mountPath"] == "/mnt/divtune"  # stages data and collects the adapter there
    assert "tolerations" not in k8s
    # without the selection, the single-pod GPU step
    plain = compile_pipeline(load_config("qwen2.5-7b-gapo"), tmp_path / "q.yaml")
    tasks = pipeline_tasks(next(yaml.safe_load_all(plain.read_text())))
    assert "train" in tasks and "train-distributed" not in tasks


# ---------------------------------------------------------------------------------------------------------
# Inside the TrainJob: group rewards across real ranks, rank 0's MLflow run, per-rank devices
# (the whole torchrun path on the toy: tests/test_torchrun.py)
# ---------------------------------------------------------------------------------------------------------

G_UNIT = 4


class _CountingReward:
    """GAPO's reward, recording which groups this process scored; fails on a group whose first answer is 'boom'."""

    name = "counting"

    def __init__(self):
        from divtune.rewards.lists import FrequencyAwareReward

        self.inner = FrequencyAwareReward()
        self.seen: list[str] = []

    def __call__(self, completions, meta):
        if "boom" in completions[0]:
            from divtune.errors import DivtuneError

            raise DivtuneError("the reward model ran out of memory")
        self.seen.append(completions[0])
        return self.inner(completions, meta)

    def diagnostics(self, completions, meta):
        return {"first_len": float(len(completions[0]))}


def _unit_batch():
    """3 groups of G=4, 6 rows a rank: group 1 (rows 4-7) straddles ranks 0 and 1."""
    items = ["A", "B", "C", "D"]
    texts = ["A", "A", "B", "C", "A", "B", "B", "D", "C", "C", "C", "C"]
    gids = [f"g{i // G_UNIT}" for i in range(12)]
    return [(g, f"<answer>{t}</answer>{g}", {"items": items}) for g, t in zip(gids, texts)]


def _rank_main(rank: int, port: int, queue) -> None:
    """One gloo rank: the batch scored, then the batch whose group 2 (rank 0's) fails; both results queued."""
    import torch.distributed as tdist

    from divtune.rewards.trl_adapter import TRLGroupReward

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for case in ("ok", "fail"):
            rows = _unit_batch()
            if case == "fail":
                rows[8] = (rows[8][0], "boom", rows[8][2])  # group 2 is scored on rank 0 (groups 0 and 2)
            part = rows[6 * rank: 6 * rank + 6]
            reward = _CountingReward()
            fn = TRLGroupReward(reward, G_UNIT)  # the defaults: torch.distributed gathering and sharing
            logged: dict = {}
            try:
                out = fn(prompts=[None] * 6, completions=[r[1] for r in part], group_id=[r[0] for r in part],
                         items=[r[2]["items"] for r in part], log_metric=logged.__setitem__)
                queue.put((case, rank, "ok", out, reward.seen, fn.groups_scored, logged))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                queue.put((case, rank, "error", f"{type(exc).__name__}: {exc}", reward.seen, fn.groups_scored,
                           logged))
    finally:
        tdist.destroy_process_group()


def test_each_group_is_scored_on_one_rank_and_shared_over_real_gloo_ranks():
    """Two real gloo processes: every group scored exactly once, on one rank, the scores the same as one process's;
    a rank whose scoring fails takes part in the exchange, so every rank raises its error instead of hanging."""
    import multiprocessing as mp

    from divtune.rewards.trl_adapter import TRLGroupReward, score_rows
    from support import free_port

    rows = _unit_batch()
    whole, _ = score_rows(rows, _CountingReward(), G_UNIT)
    single = TRLGroupReward(_CountingReward(), G_UNIT)  # one process: the same adapter, nothing to gather
    single_logged: dict = {}
    assert single(prompts=[None] * 12, completions=[r[1] for r in rows], group_id=[r[0] for r in rows],
                  items=[r[2]["items"] for r in rows], log_metric=single_logged.__setitem__) == whole
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        got: dict = {}
        for _ in range(4):
            case, rank, *rest = queue.get(timeout=120)  # a rank waiting forever in a collective times out here
            got[case, rank] = rest
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    ok0, ok1 = got["ok", 0], got["ok", 1]
    assert [ok0[0], ok1[0]] == ["ok", "ok"], got
    assert ok0[1] + ok1[1] == whole  # each rank's slice, the straddling group included
    assert sorted(ok0[2] + ok1[2]) == sorted(r[1] for r in rows[::G_UNIT])  # every group exactly once
    assert ok0[2] and ok1[2] and not set(ok0[2]) & set(ok1[2])  # split between the ranks, not repeated
    assert (ok0[3], ok1[3]) == (2, 1)  # groups 0 and 2 on rank 0, group 1 on rank 1
    assert ok0[4] == ok1[4] == single_logged  # the same diagnostics (TRL averages the ranks' values)
    assert got["fail", 0][:2] == got["fail", 1][:2] == ["error", "DivtuneError: the reward model ran out of memory"]


def test_rank_zero_logs_into_the_stage_run_from_the_environment(monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient
    from transformers import TrainerState

    from divtune.registry import tracking
    from divtune.train.trainer import mlflow_callback, mlflow_run_from_env

    tracking.setup()
    rid = MlflowClient().create_run(tracking.experiment_id("trainjob-test")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", rid)
    cb, state = mlflow_callback(), TrainerState(global_step=3)
    monkeypatch.setenv("RANK", "1")
    with mlflow_run_from_env() as active:
        assert active is None and mlflow.active_run() is None  # another rank: no run, nothing logged
        cb.on_log(None, state, None, logs={"loss": 2.0})
    monkeypatch.setenv("RANK", "0")
    with mlflow_run_from_env() as active:
        assert active == rid and mlflow.active_run().info.run_id == rid
        cb.on_log(None, state, None, logs={"loss": 1.5, "rewards/gapo/mean": 0.25})
    assert mlflow.active_run() is None
    run = MlflowClient().get_run(rid)
    assert run.data.metrics == {"loss": 1.5, "rewards_gapo_mean": 0.25}
    assert [m.step for m in MlflowClient().get_metric_history(rid, "loss")] == [3]
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)  # (MLflow's end_run drops it too)
    with mlflow_run_from_env() as active:  # `divtune train` by hand: no run of its own
        assert active is None and mlflow.active_run() is None


def test_every_rank_gets_its_own_device(monkeypatch):
    import torch

    from divtune.errors import DivtuneError
    from divtune.models.loading import rank_device

    assert rank_device() == ("cpu" if not torch.cuda.is_available() else f"cuda:{torch.cuda.current_device()}")
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device() == "cuda:1" and chosen == [1]  # and the current device: a bare "cuda" is this rank's
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DivtuneError, match="LOCAL_RANK=2 but only 2 CUDA device"):
        rank_device()
