"""One sampling contract (divtune.models.sampling): every backend sends all of it, nothing comes from the model's
generation_config.json, and every output records it.  The toy's copy here says ``repetition_penalty: 1.3`` (as a
Qwen2.5-Instruct one says 1.05): evaluated in-process and through a real ``transformers serve`` on loopback, with
the request bodies captured by a recording proxy, the settings recorded and applied must be the contract's."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from divtune.errors import DivtuneError
from divtune.models.sampling import SamplingParams
from support import free_port

MODEL_PENALTY = 1.3


@pytest.fixture(scope="module")
def penalised_model(toy_model_dir, tmp_path_factory) -> Path:
    """The toy with a generation_config.json that asks for repetition_penalty 1.3, top_k 5 and min_p 0.2."""
    d = tmp_path_factory.mktemp("toy-penalty") / "model"
    shutil.copytree(toy_model_dir, d)
    gc = json.loads((d / "generation_config.json").read_text())
    gc.update(repetition_penalty=MODEL_PENALTY, top_k=5, min_p=0.2, do_sample=True)
    (d / "generation_config.json").write_text(json.dumps(gc))
    return d


def _prompts(k: int = 2) -> list[str]:
    from divtune.data.lists import heldout_examples

    return [ex.prompt for ex in heldout_examples(0)[:k]]


@pytest.mark.parametrize("field,value,rule", [
    ("min_p", 1.5, "in [0, 1]"), ("min_p", -0.1, "in [0, 1]"), ("top_p", 0.0, "in (0, 1]"),
    ("top_k", -1, ">= 0"), ("repetition_penalty", 0.0, "> 0"), ("temperature", -1.0, ">= 0"),
    ("n", 0, ">= 1"), ("temperature", float("nan"), "finite"),
])
def test_invalid_sampling_values_are_one_line(field, value, rule):
    with pytest.raises(DivtuneError, match=rf"sampling: {field} .* must be .*{rule.split()[0]}"):
        SamplingParams(**{field: value})


def test_every_backend_form_carries_every_field():
    p = SamplingParams(n=4, temperature=0.7, top_p=0.9, top_k=0, min_p=0.05, repetition_penalty=1.0,
                       max_new_tokens=16, seed=3)
    hf = p.hf_generation_config()
    assert (hf["temperature"], hf["top_p"], hf["top_k"], hf["min_p"], hf["repetition_penalty"],
            hf["max_new_tokens"], hf["do_sample"]) == (0.7, 0.9, 0, 0.05, 1.0, 16, True)
    v = p.vllm_kwargs()
    assert v == {"n": 4, "temperature": 0.7, "top_p": 0.9, "top_k": -1, "min_p": 0.05, "repetition_penalty": 1.0,
                 "max_tokens": 16, "seed": 3}
    t = p.trl_kwargs()
    assert {k: t[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")} == \
        {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "min_p": 0.05, "repetition_penalty": 1.0}
    assert t["generation_kwargs"]["typical_p"] == 1.0 and p.trl_kwargs(use_vllm=True)["generation_kwargs"] is None


def test_training_rollouts_send_the_contract(tmp_path):
    """GRPOConfig gets every field from train.*: TRL's own min_p default (None) would let the model's config in."""
    from divtune.config import load_config
    from divtune.train.trainer import grpo_config

    tc = load_config("toy").train
    tc = dataclasses.replace(tc, min_p=0.1, repetition_penalty=1.0, top_k=0, top_p=1.0)
    g = grpo_config(tc, tmp_path / "out")
    assert (g.temperature, g.top_p, g.top_k, g.min_p, g.repetition_penalty) == (tc.temperature, 1.0, 0, 0.1, 1.0)
    assert g.generation_kwargs["typical_p"] == 1.0


def test_hf_in_process_applies_the_contract_not_the_models_generation_config(penalised_model, toy_model_dir):
    """The GenerationConfig an HF call builds, merged as transformers merges it, has the contract's values; and
    seeded samples from the penalised copy equal the plain toy's (while penalty 1.3 does change them)."""
    from divtune.evaluate.generation import HFGenerator

    p = SamplingParams(n=16, temperature=1.0, max_new_tokens=16, seed=3)
    gen = HFGenerator(penalised_model, batch_size=64)
    assert gen.model.generation_config.repetition_penalty == MODEL_PENALTY
    effective, _ = gen.model._prepare_generation_config(gen.generation_config(p))
    assert (effective.repetition_penalty, effective.top_k, effective.min_p, effective.top_p) == (1.0, 0, 0.0, 1.0)
    prompts = _prompts(2)
    got = gen.generate(prompts, p)
    plain = HFGenerator(toy_model_dir, batch_size=64).generate(prompts, p)
    assert got == plain
    assert gen.generate(prompts, dataclasses.replace(p, repetition_penalty=MODEL_PENALTY)) != got, \
        "penalty 1.3 must change these samples, or this test could not see a leak"


class _Recorder(BaseHTTPRequestHandler):
    """A loopback proxy that forwards to ``upstream`` and keeps every request body (what went over the wire)."""

    upstream = ""
    bodies: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def _forward(self, method: str) -> None:
        import requests

        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if raw:
            type(self).bodies.append({"path": self.path, **json.loads(raw)})
        r = requests.request(method, self.upstream + self.path, data=raw or None,
                             headers={"Content-Type": "application/json"}, timeout=300)
        self.send_response(r.status_code)
        self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    def do_GET(self):  # noqa: N802
        self._forward("GET")

    def do_POST(self):  # noqa: N802
        self._forward("POST")


@pytest.mark.slow
def test_hf_and_transformers_serve_record_and_send_the_same_settings(penalised_model, tmp_path):
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.generation import HFGenerator, OpenAIGenerator
    from divtune.evaluate.lists import evaluate_lists
    from divtune.serve.server import running_server

    examples = heldout_examples(0)[:2]
    sampling = SamplingParams(temperature=1.0, top_p=0.95, top_k=0, min_p=0.0, repetition_penalty=1.0,
                              max_new_tokens=24, seed=11)
    hf = HFGenerator(penalised_model, batch_size=8)
    via_hf = evaluate_lists(hf, examples, samples=1, sampling=sampling)
    with running_server(str(penalised_model), backend="transformers", port=free_port(), timeout=240,
                        log_file=tmp_path / "server.log") as (base, model_id):
        handler = type("Rec", (_Recorder,), {"upstream": base, "bodies": []})
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            api = OpenAIGenerator(f"http://127.0.0.1:{proxy.server_port}", model=model_id, concurrency=1)
            via_api = evaluate_lists(api, examples, samples=1, sampling=sampling)
            # greedy through both: the same text, token for token, as the contract makes them the same decoder
            greedy = SamplingParams(temperature=0.0, max_new_tokens=24, seed=0)
            prompts = [ex.prompt for ex in examples]
            assert api.generate(prompts, greedy) == hf.generate(prompts, greedy)
            # sampled, one completion per seeded request: the server draws what the in-process contract draws,
            # and the model's own penalty (1.3) would have drawn something else
            one = [dataclasses.replace(sampling, n=1, seed=s, max_new_tokens=16) for s in range(4)]
            served = [api.generate(prompts[:1], p)[0][0] for p in one]
            assert served == [hf.generate(prompts[:1], p)[0][0] for p in one]
            penalised = [hf.generate(prompts[:1], dataclasses.replace(p, repetition_penalty=MODEL_PENALTY))[0][0]
                         for p in one]
            assert penalised != served, "penalty 1.3 must change these draws, or this check could not see a leak"
        finally:
            proxy.shutdown()
    assert via_hf["sampling"] == via_api["sampling"] == {**sampling.to_dict(), "n": 1}
    assert via_api["generator"]["server"] == "transformers"
    assert via_api["generator"]["sampling_sent_as"] == "generation_config"
    chats = [b for b in handler.bodies if b["path"].endswith("/chat/completions")]
    # the probe in the vLLM form was refused (422), the rest carry generation_config
    assert "top_k" in chats[0] and "generation_config" not in chats[0]
    real = [b for b in chats[1:] if b["messages"][-1]["content"] != "ping"]
    assert real and all("generation_config" in b for b in real)
    for b in real[: len(examples)]:
        gc = json.loads(b["generation_config"])
        assert (b["temperature"], b["top_p"], b["max_tokens"]) == (1.0, 0.95, 24)
        assert (gc["temperature"], gc["top_p"], gc["top_k"], gc["min_p"], gc["repetition_penalty"],
                gc["max_new_tokens"]) == (1.0, 0.95, 0, 0.0, 1.0, 24)
    assert {b["seed"] for b in real[: len(examples)]} == {11, 1011}


def test_verbalized_choice_draws_by_the_stated_probabilities():
    import random

    from divtune.evaluate.lists import verbalized_choice

    items = ["Mars", "Venus", "Earth"]
    text = ("<answer>Mars</answer> <probability>0.9</probability>\n<answer>Pluto</answer> "
            "<probability>0.5</probability>\n<answer>venus</answer> <probability>0.1</probability>")
    rng = random.Random(0)
    draws = [verbalized_choice(text, items, rng) for _ in range(2000)]
    assert set(draws) == {"Mars", "Venus"}  # Pluto is not listed
    assert 0.85 < draws.count("Mars") / len(draws) < 0.95
    assert verbalized_choice("<answer>Earth</answer>", items, rng) == "Earth"  # no probability: weight shared
    assert verbalized_choice("I like Mars", items, rng) is None


def test_baseline_rows_sample_the_base_with_other_settings():
    from divtune.config import load_config
    from divtune.repro import TEMPERATURE_SWEEP, _baseline_runs

    cfg = load_config("toy")
    [(name, sp, verbal)] = _baseline_runs(cfg, "minp-0.05")
    assert (name, sp.min_p, sp.temperature, verbal) == ("base + min-p 0.05", 0.05, cfg.evaluate.temperature, False)
    sweep = _baseline_runs(cfg, "temperature")
    assert [r[1].temperature for r in sweep] == [t for t in TEMPERATURE_SWEEP if t != cfg.evaluate.temperature]
    assert all(r[1].min_p == 0 and not r[2] for r in sweep)
    [(name, sp, verbal)] = _baseline_runs(cfg, "verbalized")
    assert verbal and sp.max_new_tokens >= 5 * 24


@pytest.mark.slow
def test_repro_uniformity_baseline_rows_on_the_toy(tmp_path, toy_model_dir, cli):
    """Table 8's Min-p rows and verbalized sampling next to the base (2 samples per list, no training); each row
    and the result file record the row's sampling.  (The sweep's rows: the test above.)"""
    import re

    r = cli("repro", "uniformity", "--methods", "base,minp-0.05,minp-0.1,verbalized", "--samples", "2",
            "--work-dir", str(tmp_path / "work"), "--set", "registry.experiment=repro-baselines")
    assert r.returncode == 0, r.stderr[-2000:]
    names = re.findall(r"^\| (base[^|]*?) \| [0-9.]+ \|", r.stdout, re.M)
    assert names == ["base", "base + min-p 0.05", "base + min-p 0.1", "base, verbalized (k=5)"]
    m = re.search(r"^result recorded in (\S+)", r.stdout, re.M)
    rows = json.loads(Path(m.group(1)).read_text())["figures"]["rows"]
    notes = {row["model"]: row["sampling"] for row in rows}
    assert notes == {"base": "T=1", "base + min-p 0.05": "T=1, min_p 0.05", "base + min-p 0.1": "T=1, min_p 0.1",
                     "base, verbalized (k=5)": "T=1, verbalized sampling"}
    assert "trained models" not in r.stdout


class _FakeServer(BaseHTTPRequestHandler):
    """An OpenAI-style server: ``owned_by`` in /v1/models; ``refuse``: body keys answered with HTTP 422."""

    owned_by = "vllm"
    refuse: frozenset = frozenset()
    bodies: list[dict] = []

    def log_message(self, *args):
        pass

    def _send(self, code: int, doc: dict) -> None:
        raw = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):  # noqa: N802
        self._send(200, {"data": [{"id": "m", "object": "model", "owned_by": self.owned_by}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        bad = set(body) & self.refuse
        if bad:
            return self._send(422, {"detail": f"Unexpected fields in the request: {sorted(bad)}"})
        self._send(200, {"choices": [{"index": i, "message": {"content": "<answer>Mars</answer>"}}
                                     for i in range(body["n"])]})


@pytest.fixture
def fake_server():
    servers = []

    def start(**attrs):
        handler = type("Fake", (_FakeServer,), {"bodies": [], **attrs})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_port}", handler

    yield start
    for srv in servers:
        srv.shutdown()


def test_vllm_server_gets_the_fields_as_extra_body(fake_server):
    from divtune.evaluate.generation import OpenAIGenerator

    url, handler = fake_server(owned_by="vllm")
    gen = OpenAIGenerator(url, concurrency=1)
    p = SamplingParams(n=3, temperature=0.8, top_p=0.9, top_k=0, min_p=0.05, repetition_penalty=1.0,
                       max_new_tokens=8, seed=5)
    assert gen.generate(["Pick one: [Mars, Venus]."], p) == [["<answer>Mars</answer>"] * 3]
    [body] = handler.bodies  # no probe: /v1/models says vLLM
    assert {k: body[k] for k in ("n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_tokens",
                                 "seed")} == {"n": 3, "temperature": 0.8, "top_p": 0.9, "top_k": -1, "min_p": 0.05,
                                              "repetition_penalty": 1.0, "max_tokens": 8, "seed": 5}
    assert "generation_config" not in body and gen.describe()["sampling_sent_as"] == "extra body fields"


def test_a_server_that_takes_neither_form_is_refused(fake_server):
    from divtune.evaluate.generation import OpenAIGenerator

    url, handler = fake_server(owned_by="someone", refuse=frozenset({"min_p", "generation_config"}))
    with pytest.raises(DivtuneError, match="refuses the sampling fields in both forms"):
        OpenAIGenerator(url, concurrency=1).generate(["x"], SamplingParams())
    assert [("min_p" in b, "generation_config" in b) for b in handler.bodies] == [(True, False), (False, True)]


def test_positional_bias_samples_with_the_same_contract():
    """``--positional``: shuffled lists, one sample each, with the contract of the main call (n = 1)."""
    import re

    from divtune.data.lists import heldout_examples
    from divtune.evaluate.lists import evaluate_lists

    class FirstItem:  # always answers the first listed item
        name = "first"
        calls: list = []

        def describe(self):
            return {"backend": "first"}

        def generate(self, prompts, params):
            self.calls.append(params)
            firsts = [re.search(r"\[([^,\]]+)", p[-1]["content"]).group(1).strip() for p in prompts]
            return [[f"<answer>{f}</answer>"] * params.n for f in firsts]

    gen = FirstItem()
    sp = SamplingParams(temperature=0.9, min_p=0.1, max_new_tokens=12, seed=2)
    res = evaluate_lists(gen, heldout_examples(0)[:2], samples=5, sampling=sp, positional=True)
    assert res["positional"]["index_histogram"][0] == 1.0 and res["positional"]["invalid_rate"] == 0.0
    assert [c.n for c in gen.calls] == [5, 1]
    assert all(dataclasses.replace(c, n=1) == dataclasses.replace(sp, n=1) for c in gen.calls)


def test_a_filter_the_other_suites_would_ignore_is_refused_before_any_model_loads(tmp_path):
    from divtune.config import load_config
    from divtune.errors import ConfigError
    from divtune.evaluate.suites import evaluate_model, sampling_for

    cfg = load_config("toy")
    cfg.evaluate.min_p, cfg.evaluate.repetition_penalty = 0.1, 1.0
    assert sampling_for(cfg).min_p == 0.1 and sampling_for(cfg, temperature=0.5).temperature == 0.5
    cfg.evaluate.suites = ["lists", "novelty"]
    with pytest.raises(ConfigError, match="evaluate.min_p applies to the lists, open_set and creative suites; suite "
                                          "novelty"):
        evaluate_model(cfg, tmp_path / "no-model")
