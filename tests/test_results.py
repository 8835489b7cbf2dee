"""divtune.results: record() writes one dated JSON per run, render() turns the files into docs/results.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from divtune import results as R

ROWS = [{"model": "base", "jsd": 0.384, "invalid": 0.008}, {"model": "gapo", "jsd": 0.089, "invalid": 0.01}]


def test_record_writes_one_dated_file_with_provenance(tmp_path):
    p = R.record("gapo_step_time", {"ratio": 0.94, "median_step_s": {"grpo": 3.45, "gapo": 3.23}},
                 preset="toy", seeds={"train": 0}, settings={"G": 16, "lr": 0.0}, out_dir=tmp_path)
    assert p.parent == tmp_path
    assert re.fullmatch(r"gapo_step_time-\d{8}-\d{6}\.json", p.name)
    doc = json.loads(p.read_text())
    assert doc["kind"] == "gapo_step_time" and doc["preset"] == "toy" and doc["seeds"] == {"train": 0}
    assert doc["settings"] == {"G": 16, "lr": 0.0}
    assert doc["figures"]["median_step_s"] == {"grpo": 3.45, "gapo": 3.23}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created"])
    assert p.name[len("gapo_step_time-"):-5] == doc["created"][:19].replace("-", "").replace(":", "").replace("T", "-")
    # this test runs inside the git checkout: HEAD is known
    assert re.fullmatch(r"[0-9a-f]{40}", doc["commit"]) and isinstance(doc["dirty"], bool)
    assert doc["machine"]["cpu_count"] >= 1 and "torch" in doc["machine"]
    # a second run in the same second does not overwrite the first
    q = R.record("gapo_step_time", {"ratio": 1.0}, out_dir=tmp_path)
    assert q != p and p.exists() and len(list(tmp_path.glob("*.json"))) == 2


def test_record_refuses_bad_kind_and_empty_figures(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        R.record("../escape", {"x": 1}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="figures"):
        R.record("ok", {}, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_results_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIVTUNE_RESULTS_DIR", str(tmp_path / "r"))
    p = R.record("envcheck", {"x": 1})
    assert p.parent == tmp_path / "r"


def test_round_trip_newest_first_one_section_per_kind(tmp_path):
    old = R.record("bench_a", {"ratio": 1.11}, preset="toy", seeds=[1, 2], settings={"steps": 6}, out_dir=tmp_path)
    new = R.record("bench_a", {"ratio": 0.97}, preset="toy", seeds=[1, 2], settings={"steps": 6}, out_dir=tmp_path)
    R.record("bench_b", {"speedup": 5.3, "goal_met": True}, settings={"batch": 32}, out_dir=tmp_path)
    # make the creation order unambiguous (both files may carry the same second)
    for p, ts in ((old, "2001-01-01T00:00:00Z"), (new, "2002-01-01T00:00:00Z")):
        d = json.loads(p.read_text())
        d["created"] = ts
        p.write_text(json.dumps(d))
    md = R.render(tmp_path)
    assert md.count("\n## bench_a\n") == 1 and md.count("\n## bench_b\n") == 1
    a = md.split("\n## bench_a\n")[1].split("\n## ")[0]
    assert a.index("0.97") < a.index("1.11") and a.index("2002-01-01") < a.index("2001-01-01")
    assert "| ratio | 0.97 |" in a and "toy" in a and "steps=6" in a and "1, 2" in a
    commit = json.loads(new.read_text())["commit"]
    assert commit[:12] in a
    b = md.split("\n## bench_b\n")[1]
    assert "| speedup | 5.3 |" in b and "| goal_met | yes |" in b and "batch=32" in b
    assert R.render(tmp_path) == md  # deterministic


def test_rows_render_as_their_own_table(tmp_path):
    R.record("repro-uniformity", {"rows": ROWS, "samples": 100}, preset="toy", seeds={"eval": 1234},
             settings={}, out_dir=tmp_path)
    md = R.render(tmp_path)
    assert "| model | jsd | invalid |" in md
    assert "| base | 0.384 | 0.008 |" in md and "| gapo | 0.089 | 0.01 |" in md
    assert "| samples | 100 |" in md


def test_nested_figures_are_flattened(tmp_path):
    R.record("nest", {"median_step_s": {"grpo": 3.0, "gapo": 2.5}, "step_s": [1.0, 2.0]}, out_dir=tmp_path)
    md = R.render(tmp_path)
    assert "| median_step_s.grpo | 3 |" in md and "| median_step_s.gapo | 2.5 |" in md
    assert "| step_s | 1, 2 |" in md


def test_no_absolute_paths_in_the_files_or_the_page(tmp_path):
    model = tmp_path / "models" / "toy-abc123"
    R.record("paths", {"out": str(model / "adapter")}, settings={"model": str(model), "home": "~/cache/x"},
             out_dir=tmp_path)
    text = next(tmp_path.glob("*.json")).read_text()
    md = R.render(tmp_path)
    for s in (text, md):
        assert str(tmp_path) not in s and "/tmp" not in s and "~/" not in s
        assert "toy-abc123" in s  # the last component stays: it names the thing
    assert "/home/" not in md and "/work/" not in md


def test_empty_or_missing_dir_renders_a_page(tmp_path):
    assert "No results recorded yet." in R.render(tmp_path / "none")


def test_a_broken_result_file_is_named(tmp_path):
    (tmp_path / "bad-20010101-000000.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad-20010101-000000.json"):
        R.render(tmp_path)


def test_cli_render_and_stale_check(tmp_path):
    res_dir, page = tmp_path / "results", tmp_path / "docs" / "results.md"
    R.record("bench_a", {"ratio": 1.0}, out_dir=res_dir)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "divtune.results", "render", "--results", str(res_dir),
                               "--out", str(page), *args], capture_output=True, text=True, timeout=120)

    assert cli("--check").returncode == 1  # no page yet
    assert cli().returncode == 0 and page.read_text() == R.render(res_dir)
    ok = cli("--check")
    assert ok.returncode == 0, ok.stderr
    R.record("bench_a", {"ratio": 0.9}, out_dir=res_dir)  # a new run makes the page stale
    stale = cli("--check")
    assert stale.returncode == 1 and "stale" in stale.stderr
    assert "0.9" not in page.read_text()  # --check writes nothing
    assert str(tmp_path) not in page.read_text()


def test_commit_is_the_one_the_run_started_from(tmp_path, monkeypatch):
    """A long run records the commit it started from; if HEAD moved meanwhile, the page says so."""
    head, _ = R.commit_info()
    monkeypatch.setattr(R, "_AT_IMPORT", ("0" * 40, False))
    doc = json.loads(R.record("moved", {"x": 1}, out_dir=tmp_path).read_text())
    assert doc["commit"] == "0" * 40 and doc["dirty"] is False
    assert doc["commit_at_record"] == head
    assert f"(HEAD was `{head[:12]}` when it was recorded)" in R.render(tmp_path)
    monkeypatch.setattr(R, "_AT_IMPORT", (head, False))
    assert "commit_at_record" not in json.loads(R.record("same", {"x": 1}, out_dir=tmp_path).read_text())
