"""Coherence benchmarks through the real lm-eval harness, offline, on the toy model and tiny fixture files."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from divtune.errors import DataError, DivtuneError
from divtune.evaluate import benchmarks as bm
from divtune.evaluate.sandbox import run_python

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "benchmarks"


def _rows(rel: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / rel).read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------
# the sandbox and the offline HumanEval metric
# --------------------------------------------------------------------------------------


def test_sandbox_pass_fail_timeout_and_isolation(tmp_path, monkeypatch):
    assert run_python("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n").passed
    wrong = run_python("def add(a, b):\n    return a * b\nassert add(2, 3) == 5\n")
    assert wrong.status == "failed" and "AssertionError" in wrong.detail

    t0 = time.monotonic()
    loop = run_python("while True:\n    pass\n", timeout=1.5)
    assert loop.status == "timeout" and time.monotonic() - t0 < 10

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    (tmp_path / "keep.txt").write_text("mine")
    prog = ("import os\nopen('written.txt', 'w').write('x')\nassert os.path.exists('written.txt')\n"
            "assert 'AWS_SECRET_ACCESS_KEY' not in os.environ\n"
            "try:\n    os.remove(os.path.join(%r, 'keep.txt'))\nexcept TypeError:\n    pass\n" % str(tmp_path))
    res = run_python(prog)
    assert res.passed, res
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # nothing written here, nothing removed


def test_offline_humaneval_metric_runs_the_tests():
    import divtune.evaluate.lm_eval_tasks.utils as he

    docs = _rows("humaneval/test.jsonl")
    refs = [f"{d['test']}\ncheck({d['entry_point']})" for d in docs]  # the task's doc_to_target
    right = he.build_predictions([[d["canonical_solution"]] for d in docs], docs)
    wrong = he.build_predictions([["    return None\n"] for _ in docs], docs)
    assert he.pass_at_k(refs, right, k=[1]) == {"pass@1": 1.0}
    assert he.pass_at_k(refs, wrong, k=[1]) == {"pass@1": 0.0}
    # code_eval's unbiased estimator: 2 of 4 samples right -> pass@1 0.5, pass@2 5/6
    assert he.estimate_pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert he.estimate_pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


# --------------------------------------------------------------------------------------
# data: sampling, layout, validation (no model)
# --------------------------------------------------------------------------------------


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_paper_sample_sizes_are_deterministic_by_seed(tmp_path):
    root = tmp_path / "data"
    _write(root / "gsm8k/test.jsonl", [{"question": f"q{i}", "answer": f"a\n#### {i}"} for i in range(300)])
    _write(root / "math/test.jsonl", [{"problem": f"p{s}{i}", "level": "Level 1", "type": s,
                                       "solution": f"$\\boxed{{{i}}}$"} for s in bm.MATH_SUBJECTS for i in range(40)])
    _write(root / "mmlu_pro/test.jsonl", [{"question": f"{c}{i}", "options": ["x", "y"], "answer": "A",
                                          "answer_index": 0, "category": c, "src": "s"}
                                         for c in bm.MMLU_PRO_CATEGORIES for i in range(20)])

    def prep(task, seed, limit=None):
        work = tmp_path / f"w-{task}-{seed}-{limit}"
        return bm.prepare(task, root, str(root), work, seed=seed, num_fewshot=0, limit=limit,
                          sample_sizes=bm.SAMPLE_SIZES), work

    g, w = prep("gsm8k", 1)
    assert g.num_docs == 200 and len((w / "data/gsm8k_test.jsonl").read_text().splitlines()) == 200
    same = (prep("gsm8k", 1)[1] / "data/gsm8k_test.jsonl").read_text()
    other = (prep("gsm8k", 2)[1] / "data/gsm8k_test.jsonl").read_text()
    assert (w / "data/gsm8k_test.jsonl").read_text() == same != other
    m, _ = prep("math", 1)
    assert m.num_docs == 210 and set(m.subjects.values()) == {30} and len(m.subtasks) == 7
    p, w = prep("mmlu_pro", 1)
    assert p.num_docs == 196 and set(p.subjects.values()) == {14} and len(p.subjects) == 14
    cfg = (w / "tasks/divtune_mmlu_pro_computer_science.yaml").read_text()
    assert "lm_eval/tasks/mmlu_pro/mmlu_pro_computer_science.yaml" in cfg and "dataset_path: json" in cfg
    # --limit keeps every subject while it can: 9 MATH problems -> 2 + 1 x 6 subjects
    m, _ = prep("math", 1, limit=9)
    assert m.num_docs == 9 and len(m.subjects) == 7


def test_bad_data_is_one_clear_error(tmp_path):
    root = tmp_path / "d"
    shutil.copytree(FIXTURES, root)
    (root / "math/test.jsonl").unlink()
    with pytest.raises(DataError, match=r"benchmark data file missing: .*math/test\.jsonl"):
        bm.run_benchmarks(model="unused", data=str(root), tasks="gsm8k,math")
    with pytest.raises(DivtuneError, match="--allow-code-execution"):
        bm.run_benchmarks(model="unused", data=str(FIXTURES), tasks="humaneval")
    with pytest.raises(DivtuneError, match="unknown benchmark 'mmlu'"):
        bm.run_benchmarks(model="unused", data=str(FIXTURES), tasks="gsm8k,mmlu")
    with pytest.raises(DataError, match=r"validation\.jsonl: 1 rows for category 'biology', 5-shot"):
        bm.prepare("mmlu_pro", FIXTURES, "fx", tmp_path / "w", seed=0, num_fewshot=None, limit=None,
                   sample_sizes=bm.SAMPLE_SIZES)
    (root / "gsm8k/test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(DataError, match=r"gsm8k/test\.jsonl line 2: not valid JSON"):
        bm.prepare("gsm8k", root, str(root), tmp_path / "w2", seed=0, num_fewshot=0, limit=None,
                   sample_sizes=bm.SAMPLE_SIZES)


# --------------------------------------------------------------------------------------
# the real harness on the toy model
# --------------------------------------------------------------------------------------


def test_all_benchmarks_through_lm_eval_on_the_toy(toy_model_dir):
    sizes = {"gsm8k": 3, "math": 1, "mmlu_pro": 1}  # 3 of 4 problems; 1 per MATH subject / MMLU-Pro category
    res = bm.run_benchmarks(model=str(toy_model_dir), data=str(FIXTURES), runs=2, max_gen_toks=4, num_fewshot=0,
                            allow_code_execution=True, sample_sizes=sizes, seed=7, batch_size=32)
    assert set(res["metrics"]) == {"bench.gsm8k", "bench.math", "bench.math_verify", "bench.mmlu_pro", "bench.humaneval"}
    assert res["run_seeds"] == [7, 8]
    assert [r["lm_eval_config"]["torch_seed"] for r in res["per_run"]] == [7, 8]
    assert {r["lm_eval_config"]["fewshot_seed"] for r in res["per_run"]} == {7}
    expected_docs = {"gsm8k": 3, "math": 7, "mmlu_pro": 14, "humaneval": 3}
    for name, r in res["results"].items():
        assert r["num_docs"] == expected_docs[name], name
        assert len(r["values"]) == 2 and r["mean"] == pytest.approx(sum(r["values"]) / 2)
        assert r["std"] == pytest.approx(statistics.stdev(r["values"]))  # the spread over runs, not per doc
        assert res["metrics"][f"bench.{name}"] == r["mean"]
        assert res["metrics_std"][f"bench.{name}"] == r["std"]
        gk = r["generation_kwargs"]  # as lm-eval used them, merged into the stock task's own
        assert gk["do_sample"] is True and gk["temperature"] == 0.7 and gk["max_gen_toks"] == 4 and gk["until"]
        assert len(r["responses_digests"]) == 2
    assert res["results"]["gsm8k"]["metric"] == "exact_match,flexible-extract"
    assert "exact_match,strict-match" in res["results"]["gsm8k"]["metrics"]
    assert len(res["results"]["math"]["subtasks"]) == 7 and len(res["results"]["mmlu_pro"]["subtasks"]) == 14
    assert res["results"]["mmlu_pro"]["subjects"]["computer science"] == 1
    # (each run's seed reaches lm-eval, asserted above; whether two seeds give different samples depends on the
    # model: the toy-v4 base is near-deterministic on these non-list prompts, so that is not asserted here)


# --------------------------------------------------------------------------------------
# S3 data, and an OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------


def test_data_from_s3_prefix(aws_env, tmp_path, toy_model_dir, cli):
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="bench")
    for p in FIXTURES.rglob("*.jsonl"):
        s3.upload_file(str(p), "bench", f"eval/{p.relative_to(FIXTURES).as_posix()}")
    out = tmp_path / "bench.json"
    r = cli("evaluate", "benchmarks", "--model", str(toy_model_dir), "--data", "s3://bench/eval",
            "--tasks", "gsm8k", "--runs", "1", "--limit", "2", "--max-gen-toks", "4", "--num-fewshot", "1",
            "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["data"] == "s3://bench/eval" and res["results"]["gsm8k"]["num_docs"] == 2
    assert res["results"]["gsm8k"]["num_fewshot"] == 1 and len(res["results"]["gsm8k"]["values"]) == 1
    assert "gsm8k" in r.stderr  # the table
    # a prefix without the files: tests/test_bad_input_table.py (benchmarks-data-prefix-empty)
    with pytest.raises(DivtuneError, match="bucket 'no-such-bucket' does not exist"):
        bm.run_benchmarks(model=str(toy_model_dir), data="s3://no-such-bucket/x", tasks="gsm8k", num_fewshot=0)


class _FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def _send(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._send({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    @staticmethod
    def answer(prompt: str) -> str:
        if "def add(" in prompt:  # one of the 3 HumanEval fixtures gets a correct body
            return "    return a + b\n"
        if "def " in prompt:
            return "    return None\n"
        return " 3 * 12 = 36\n#### 36"  # right for one of the 4 GSM8K fixtures

    def do_POST(self):  # noqa: N802
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **payload})
        if "messages" in payload:  # chat completions
            text = self.answer(payload["messages"][-1]["content"])
            self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
            return
        prompts = payload["prompt"] if isinstance(payload["prompt"], list) else [payload["prompt"]]
        self._send({"choices": [{"index": i, "text": self.answer(p)} for i, p in enumerate(prompts)]})


def test_endpoint_through_lm_eval_completions_and_chat():
    _FakeOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        res = bm.run_benchmarks(endpoint=url, data=str(FIXTURES), tasks="gsm8k,humaneval", runs=2, num_fewshot=0,
                                seed=11, allow_code_execution=True)
        completions, _FakeOpenAI.requests = _FakeOpenAI.requests, []
        chat = bm.run_benchmarks(endpoint=url + "/v1", data=str(FIXTURES), tasks="gsm8k", runs=1, num_fewshot=0,
                                 apply_chat_template=True)
    finally:
        server.shutdown()
        server.server_close()
    assert res["model"]["type"] == "local-completions" and res["model"]["model"] == "fake-model"
    assert len(completions) == 2 * (4 + 3) and {r["path"] for r in completions} == {"/v1/completions"}
    assert {r["temperature"] for r in completions} == {0.7} and {r["seed"] for r in completions} == {11, 12}
    # the harness scored the answers: 1 of 4 GSM8K answers is right; 1 of 3 HumanEval bodies passes its tests
    # when the sandbox runs them
    assert res["metrics"]["bench.gsm8k"] == pytest.approx(0.25) and res["metrics_std"]["bench.gsm8k"] == 0.0
    assert res["metrics"]["bench.humaneval"] == pytest.approx(1 / 3)

    assert chat["model"]["type"] == "local-chat-completions"
    assert len(_FakeOpenAI.requests) == 4 and {r["path"] for r in _FakeOpenAI.requests} == {"/v1/chat/completions"}
    assert chat["metrics"]["bench.gsm8k"] == pytest.approx(0.25)
