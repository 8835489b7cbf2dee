"""`divtune repro uniformity` end to end on a tiny budget: the table, the MLflow record, usable models."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow

METHODS = ("base", "sft", "grpo", "gapo")


def test_repro_uniformity_table_tracking_and_models(tmp_path, toy_model_dir):
    work = tmp_path / "work"
    r = run_cli("repro", "uniformity", "--methods", ",".join(METHODS), "--samples", "4", "--work-dir", str(work),
                "--set", "train.max_steps=2", "--set", "train.sft_epochs=0.02", "--set", "data.num_examples=24",
                "--set", "registry.experiment=repro-test")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\| (\w+) \| ([0-9.]+) \| ([0-9.]+) \|", r.stdout, re.M)}
    assert set(rows) == set(METHODS)
    for jsd, invalid in rows.values():
        assert 0.0 <= jsd <= 1.0 and 0.0 <= invalid <= 1.0

    # the run is in MLflow with the table, the JSON and the answer-distribution chart
    import mlflow

    from divtune.registry import tracking

    tracking.setup()
    exp = mlflow.get_experiment_by_name("repro-test")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert {"uniformity.md", "uniformity.json", "answer_distributions.png"} <= arts
    assert runs[0].data.metrics["gapo.jsd_mean"] == pytest.approx(rows["gapo"][0], abs=5e-4)

    # every trained model it names can be evaluated on a user's own lists
    line = next(x for x in r.stdout.splitlines() if x.startswith("trained models"))
    named = line.split(": ", 1)[1].split(", ")
    assert [p.rsplit("/", 1)[1] for p in named] == [f"{m}-merged" for m in METHODS[1:]]
    lists = tmp_path / "mine.json"
    lists.write_text(json.dumps([["Kiwi", "Mango", "Papaya"], ["Oslo", "Lima", "Quito", "Hanoi"]]))
    ev = run_cli("evaluate", "lists", "--model", named[-1], "--lists", str(lists), "--samples", "4",
                 "-o", str(tmp_path / "eval.json"))
    assert ev.returncode == 0, ev.stderr[-2000:]
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["num_lists"] == 2 and [p["items"] for p in res["per_list"]][1] == ["Oslo", "Lima", "Quito", "Hanoi"]


def test_repro_darling_table_tracking_and_models(tmp_path, toy_model_dir):
    """`divtune repro darling --preset toy-darling` on a tiny budget: three rows, the MLflow run, usable models."""
    work = tmp_path / "work"
    r = run_cli("repro", "darling", "--preset", "toy-darling", "--samples", "4", "--work-dir", str(work),
                "--set", "train.max_steps=2", "--set", "data.num_examples=24",
                "--set", "registry.experiment=repro-darling-test")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\| (\w+) \| ([0-9.]+) \|", r.stdout, re.M)}
    assert set(rows) == {"base", "grpo", "darling"}
    assert all(0.0 <= q <= 1.0 for q in rows.values())

    import mlflow

    from divtune.registry import tracking

    tracking.setup()
    exp = mlflow.get_experiment_by_name("repro-darling-test")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {"darling.md", "darling.json"} <= {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}

    line = next(x for x in r.stdout.splitlines() if x.startswith("trained models"))
    named = line.split(": ", 1)[1].split(", ")
    assert [p.rsplit("/", 1)[1] for p in named] == ["grpo-merged", "darling-merged"]
    assert all((work / p.rsplit("/", 1)[1] / "model.safetensors").is_file() for p in named)
