"""`divtune repro uniformity|darling` end to end on a tiny budget (one step per method): the table, the MLflow
record, the result file, and models that are the ones the table measured. (Which way the methods move the toy:
tests/test_toy_model.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

METHODS = ("base", "sft", "grpo", "gapo")
TINY = ["--set", "train.max_steps=1", "--set", "data.num_examples=8", "--set", "train.num_generations=4",
        "--set", "train.per_device_train_batch_size=8"]


def _run(experiment: str):
    import mlflow

    from divtune.registry import tracking

    tracking.setup()
    runs = mlflow.search_runs([mlflow.get_experiment_by_name(experiment).experiment_id], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    return runs[0], arts


def _named_models(stdout: str) -> list[str]:
    line = next(x for x in stdout.splitlines() if x.startswith("trained models"))
    return line.split(": ", 1)[1].split(", ")


def _result_file(stdout: str) -> dict:
    m = re.search(r"^result recorded in (\S+)", stdout, re.M)
    assert m, stdout[-2000:]
    return json.loads(Path(m.group(1)).read_text())


def test_repro_uniformity_table_tracking_and_models(tmp_path, toy_model_dir, cli):
    work = tmp_path / "work"
    r = cli("repro", "uniformity", "--methods", ",".join(METHODS), "--samples", "4", "--work-dir", str(work),
            *TINY, "--set", "train.sft_epochs=0.02", "--set", "registry.experiment=repro-test")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^\| (\w+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", r.stdout, re.M)}
    assert list(rows) == list(METHODS)

    # the run is in MLflow with the table, the JSON and the chart; its metrics are the table's, method by method
    run, arts = _run("repro-test")
    assert {"uniformity.md", "uniformity.json", "answer_distributions.png"} <= arts
    for m, (jsd, invalid, unique) in rows.items():
        got = (run.data.metrics[f"{m}.jsd_mean"], run.data.metrics[f"{m}.invalid_rate"],
               run.data.metrics[f"{m}.unique_mean"])
        assert got == pytest.approx((jsd, invalid, unique), abs=5e-3), m
    recorded = _result_file(r.stdout)
    assert [row["model"] for row in recorded["figures"]["rows"]] == list(METHODS)

    # every trained model it names is a merged model directory; the GAPO one is the model the table measured:
    # the same held-out lists, samples and seed give the same answers
    named = _named_models(r.stdout)
    assert [p.rsplit("/", 1)[1] for p in named] == [f"{m}-merged" for m in METHODS[1:]]
    assert all((Path(p) / "model.safetensors").is_file() for p in named)
    import mlflow

    measured = json.loads(Path(mlflow.MlflowClient().download_artifacts(run.info.run_id, "uniformity.json")).read_text())
    ev = cli("evaluate", "lists", "--model", named[-1], "--samples", "4", "--max-new-tokens", "24", "--no-mlflow",
             "-o", str(tmp_path / "eval.json"))
    assert ev.returncode == 0, ev.stderr[-2000:]
    again = json.loads((tmp_path / "eval.json").read_text())
    assert [p["counts"] for p in again["per_list"]] == [p["counts"] for p in measured["results"]["gapo"]["per_list"]]

    # ... and it answers a user's own lists
    lists = tmp_path / "mine.json"
    lists.write_text(json.dumps([["Kiwi", "Mango", "Papaya"], ["Oslo", "Lima", "Quito", "Hanoi"]]))
    ev = cli("evaluate", "lists", "--model", named[-1], "--lists", str(lists), "--samples", "4", "--no-mlflow",
             "-o", str(tmp_path / "mine-eval.json"))
    assert ev.returncode == 0, ev.stderr[-2000:]
    res = json.loads((tmp_path / "mine-eval.json").read_text())
    assert [p["items"] for p in res["per_list"]] == [["Kiwi", "Mango", "Papaya"], ["Oslo", "Lima", "Quito", "Hanoi"]]
    assert all(sum(p["counts"].values()) + p["invalid"] == 4 for p in res["per_list"])


def test_repro_darling_table_tracking_and_models(tmp_path, toy_model_dir, cli):
    """`divtune repro darling --preset toy-darling` on a tiny budget: three rows, the MLflow run with the table's
    figures, the result file, and the two trained models."""
    work = tmp_path / "work"
    r = cli("repro", "darling", "--preset", "toy-darling", "--samples", "4", "--work-dir", str(work), *TINY,
            "--set", "registry.experiment=repro-darling-test")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\| (\w+) \| ([0-9.]+) \| ([0-9.]+) \|", r.stdout, re.M)}
    assert list(rows) == ["base", "grpo", "darling"]

    run, arts = _run("repro-darling-test")
    assert {"darling.md", "darling.json"} <= arts
    for m, (quality, classes) in rows.items():
        got = (run.data.metrics[f"{m}.quality"], run.data.metrics[f"{m}.classes"])
        assert got == pytest.approx((quality, classes), abs=5e-3), m
    assert [row["model"] for row in _result_file(r.stdout)["figures"]["rows"]] == ["base", "grpo", "darling"]

    named = _named_models(r.stdout)
    assert [p.rsplit("/", 1)[1] for p in named] == ["grpo-merged", "darling-merged"]
    assert all((work / p.rsplit("/", 1)[1] / "model.safetensors").is_file() for p in named)
