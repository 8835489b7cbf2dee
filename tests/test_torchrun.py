"""The TrainJob's multi-process path, run for real: ``torchrun`` with two CPU processes (gloo) on the exact command
line and environment of the manifest ``divtune.train.distributed.trainjob_manifest`` builds, on the toy, against
one process with the same seed and the same global batch.

What makes the two layouts comparable, and is not a shortcut of the test:

* rollouts: ``generate`` samples a batch with one ``multinomial``, so stock sampling gives other completions on
  other layouts.  The run samples with ``DIVTUNE_ROW_SEEDED_SAMPLING=1`` (set in ``cluster.env``, so it is in the
  TrainJob's env like any other setting): every completion is drawn from its own stream keyed by (seed, step,
  global row) -- the trainer's real sampler (``divtune.train.trainer.RowSeededSampler``), nothing replayed;
* batch: per device 3 x 2 accumulation x 2 processes = 12 completions an optimizer step, against 3 x 4 x 1; a
  process generates 6 completions, so with G = 4 the second group straddles the two ranks (rows 4-7: 2 on rank 0,
  2 on rank 1) and its reward exists only through the cross-rank gathering;
* loss: ``loss_type=grpo`` (the toy's) averages per sequence, then over equal micro-batches, then over ranks:
  the same normaliser (1 / 12 completions) in both layouts (``bnpo``'s per-micro-batch token count is not).

Sampled at temperature 2 (at 1.0 the toy's groups soon agree on one answer and the later steps have no gradient).
Compared: every step's rewards (mean and std per reward function, the overall ones, the zero-std share, the
diversity diagnostics), completion lengths and gradient norm, as MLflow has them; the adapter (within
:data:`ADAPTER_RTOL`, which says why it is not elementwise); and each of the distributed run's metrics is logged
once a step.  Then the distributed run is resumed from its
step-2 checkpoint (the later checkpoint and the adapter deleted, as a job killed after step 2 leaves them): it
trains steps 3-4 only and ends at the same adapter with the same rewards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from divtune.config import load_config
from divtune.train import distributed as dist
from divtune.train.trainer import ROW_SEEDED_ENV
from support import REPO, free_port

pytestmark = pytest.mark.slow

G, PER_DEVICE, WORLD, STEPS = 4, 3, 2, 4
#: Adapter tolerance: the relative L2 difference of the LoRA B matrices (what training changed; B starts at zero).
#: Elementwise equality is no criterion under Adam: a weight whose true gradient is ~0 gets float noise of the
#: order of 1e-7 (sums over O(1) terms in a different order), which Adam scales to a step of ~lr in either
#: direction.  Measured on this geometry: one process as 3 x 4 against one process as 6 x 2 (no distribution
#: at all) differ by 0.34 %; one process against two by 0.63 %.  A lost rank's gradient or a dropped group
#: moves B by tens of percent; a loss off by a constant factor (which Adam ignores) shows in the gradient norm,
#: compared step by step.
ADAPTER_RTOL = 2e-2
COMPARED = ("reward", "rewards_", "frac_reward_zero_std", "completions/", "diversity/")


def _config(tmp_path: Path, accumulation: int):
    cfg = load_config("toy", overrides=[
        f"train.num_generations={G}", f"train.per_device_train_batch_size={PER_DEVICE}",
        f"train.gradient_accumulation_steps={accumulation}", f"train.max_steps={STEPS}", "train.save_steps=2",
        "train.logging_steps=1", "train.save_total_limit=4", "train.seed=7", "train.temperature=2.0",
        "cluster.cache_pvc=divtune-cache", f"cluster.cache_mount_path={tmp_path / 'pvc'}"])
    cfg.cluster.env[ROW_SEEDED_ENV] = "1"
    return cfg.validate()


def _manifest(cfg, data: Path, base: Path, out: Path, run_id: str) -> dict:
    return dist.trainjob_manifest(cfg, name="divtune-torchrun-test", namespace="ns", image="unused",
                                  data_path=str(data), base_path=str(base), output_path=str(out),
                                  num_nodes=1, gpus_per_node=WORLD, mlflow_run_id=run_id)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's torchrun
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DIVTUNE_NO_PROGRESS="1")
    return env


def _run_trainjob(manifest: dict) -> subprocess.CompletedProcess:
    """The TrainJob's container: its command and args, its env, and the variables the torch-distributed runtime
    gives torchrun (``PET_*``: nodes, processes per node, node rank, master)."""
    t = manifest["spec"]["trainer"]
    env = {e["name"]: e["value"] for e in t["env"] if "value" in e}
    env.update(PET_NNODES=str(t["numNodes"]), PET_NPROC_PER_NODE=str(t["numProcPerNode"]), PET_NODE_RANK="0",
               PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(free_port()))
    return subprocess.run([*t["command"], *t["args"]], capture_output=True, text=True, env=_env(env), cwd=REPO,
                          timeout=600)


def _summary(res: subprocess.CompletedProcess) -> dict:
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    start = res.stdout.index('{\n  "adapter"')
    return json.JSONDecoder().raw_decode(res.stdout[start:])[0]


def _tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def _history(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def _values(points: list[tuple[int, float]]) -> list[float]:
    return [v for _, v in points]


def _rel_diff(a: dict, b: dict) -> tuple[float, float]:
    """(||a - b|| / ||a|| over all tensors, the largest elementwise difference)."""
    assert sorted(a) == sorted(b)
    num = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a)
    den = sum(float(a[k].double().pow(2).sum()) for k in a)
    return (num / den) ** 0.5, max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_process_trainjob_matches_one_process_and_resumes(tmp_path, toy_model_dir):
    from mlflow.tracking import MlflowClient

    from divtune.data.synthesize import synthesize_file
    from divtune.registry import tracking

    dist_cfg, single_cfg = _config(tmp_path, accumulation=2), _config(tmp_path, accumulation=4)
    per_rank = PER_DEVICE * dist_cfg.train.gradient_accumulation_steps  # completions one process generates
    assert per_rank * WORLD == PER_DEVICE * single_cfg.train.gradient_accumulation_steps  # the same global batch
    # a group straddles the ranks, the global batch holds whole groups -- and TRL refuses a process that runs as a
    # world of one (6 completions are not whole groups of 4): the two processes really are one gloo job
    assert per_rank % G and (per_rank * WORLD) % G == 0
    d = dist_cfg.data
    data = tmp_path / "pvc" / "data.jsonl"
    data.parent.mkdir(parents=True)
    synthesize_file("lists", data, num=24, seed=0, categories=d.categories, min_len=d.min_len, max_len=d.max_len)
    tracking.setup()
    client = MlflowClient()
    exp = tracking.experiment_id("torchrun-test")
    run_dist, run_single, run_resume = (client.create_run(exp, run_name=n).info.run_id
                                        for n in ("dist", "single", "resumed"))

    out_dist = tmp_path / "pvc" / "adapter"
    res = _run_trainjob(_manifest(dist_cfg, data, toy_model_dir, out_dist, run_dist))
    summary = _summary(res)
    assert summary["global_step"] == STEPS and summary["resumed_from"] is None
    assert res.stdout.count('"global_step"') == 1  # one summary (rank 0), not one per process

    # the same config but one process accumulating twice as many micro-batches, through the same CLI
    single_manifest = _manifest(single_cfg, data, toy_model_dir, tmp_path / "single", run_single)
    args = single_manifest["spec"]["trainer"]["args"]
    env = {e["name"]: e["value"] for e in single_manifest["spec"]["trainer"]["env"] if "value" in e}
    single = subprocess.run([sys.executable, "-m", "divtune.cli", *args], capture_output=True, text=True,
                            env=_env(env), cwd=REPO, timeout=600)
    assert _summary(single)["global_step"] == STEPS

    # MLflow: rank 0 logged every step once into the train stage's run; the rewards are the single process's
    h_dist, h_single = _history(client, run_dist), _history(client, run_single)
    for key, points in h_dist.items():
        steps = [s for s, _ in points]
        if key == "epoch":  # also in the Trainer's end-of-training summary, at the last step
            steps.remove(STEPS)
        assert len(steps) == len(set(steps)), f"{key} logged more than once a step: {steps}"
    compared = sorted(k for k in h_dist if k.startswith(COMPARED))
    name = "rewards_gapo_frequency"
    assert {"reward", "reward_std", f"{name}_mean", f"{name}_std", "diversity/group_jsd"} <= set(compared)
    for key in compared:
        assert [s for s, _ in h_dist[key]] == list(range(1, STEPS + 1)), key
        assert [s for s, _ in h_single[key]] == list(range(1, STEPS + 1)), key
        assert _values(h_dist[key]) == pytest.approx(_values(h_single[key]), rel=1e-5, abs=1e-6), key
    assert len(set(_values(h_dist["reward"]))) > 1  # the rewards move: the steps differ
    assert _values(h_dist["grad_norm"]) == pytest.approx(_values(h_single["grad_norm"]), rel=1e-3)
    assert min(_values(h_dist["grad_norm"])) > 0  # every step has a learning signal

    # the adapters: trained and equal within float tolerance
    a_dist, a_single = _tensors(out_dist), _tensors(tmp_path / "single")
    moved = max(float(t.abs().max()) for k, t in a_dist.items() if "lora_B" in k)
    b_dist = {k: t for k, t in a_dist.items() if "lora_B" in k}  # LoRA's B starts at zero: B is what training did
    rel, worst = _rel_diff(b_dist, {k: a_single[k] for k in b_dist})
    print(f"adapter: max |lora_B| {moved:.3g}; one process vs two: relative L2 difference {rel:.3g}, "
          f"largest element difference {worst:.3g}; all tensors: {_rel_diff(a_dist, a_single)}")
    assert moved > 0.5 * sum(_values(h_dist["learning_rate"]))  # trained (Adam moves a weight ~lr a step)
    assert rel < ADAPTER_RTOL

    # killed after step 2: the later checkpoint and the adapter are gone; the job runs again and resumes
    ckpts = out_dist.with_name(out_dist.name + "-checkpoints")
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shutil.rmtree(ckpts / "checkpoint-4")
    shutil.rmtree(out_dist)
    res = _run_trainjob(_manifest(dist_cfg, data, toy_model_dir, out_dist, run_resume))
    summary = _summary(res)
    assert summary["global_step"] == STEPS and Path(summary["resumed_from"]).name == "checkpoint-2"
    h_resume = _history(client, run_resume)
    for key in compared:
        assert [s for s, _ in h_resume[key]] == [3, 4], key  # steps 3-4 only: 1-2 come from the checkpoint
        assert _values(h_resume[key]) == pytest.approx(_values(h_dist[key])[2:], rel=1e-5, abs=1e-6), key
    resumed = _tensors(out_dist)
    rel, worst = _rel_diff(b_dist, {k: resumed[k] for k in b_dist})
    print(f"adapter: resumed vs uninterrupted: relative L2 difference {rel:.3g}, largest element difference "
          f"{worst:.3g}")
    assert rel < 1e-6  # the same layout, optimizer state and RNG states from the checkpoint: the same floats
