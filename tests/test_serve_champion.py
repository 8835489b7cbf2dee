"""The served champion answers like the in-process one: the toy GAPO model, registered as ``@champion`` in the
session's MLflow SQLite registry, served by ``divtune serve --model models:/NAME@champion`` (a real process,
``transformers serve`` on loopback), evaluated on the held-out lists by ``divtune evaluate lists --endpoint URL``
with no model id or sampling flags, and compared with ``divtune evaluate lists --model models:/NAME@champion``."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import requests

from divtune.registry import models as reg
from support import REPO, free_port

#: ChatML, as Qwen2.5-Instruct's chat template renders a user turn and the generation prompt.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

#: Samples per held-out list on each side: 10 lists x 50 = 500 answers, about a minute each way on the toy.
SAMPLES = 50


def _counts(res: dict) -> np.ndarray:
    """Per list: answer counts over the list's items plus the invalid bucket (lists x (8 + 1))."""
    return np.array([[r["counts"][i] for i in r["items"]] + [r["invalid"]] for r in res["per_list"]], dtype=float)


def _jsd_mean_sd(counts: np.ndarray, draws: int = 400, seed: int = 0) -> float:
    """Parametric-bootstrap standard deviation of the JSD-to-uniform mean over lists (multinomial resampling of
    each list's answers from its own empirical distribution, the same number of samples)."""
    from divtune.answers.metrics import jsd_to_uniform

    rng = np.random.default_rng(seed)
    means = []
    for _ in range(draws):
        means.append(np.mean([jsd_to_uniform(rng.multinomial(int(c.sum()), c / c.sum()) / c.sum()) for c in counts]))
    return float(np.std(means))


def _homogeneity_p(a: np.ndarray, b: np.ndarray) -> float:
    """One p-value for "both sides sample the same answer distribution, list by list": the chi-square statistics
    of the per-list 2 x k contingency tables (all-zero columns dropped) summed, against chi-square with the summed
    degrees of freedom (independent lists)."""
    from scipy.stats import chi2, chi2_contingency

    stat, dof = 0.0, 0
    for x, y in zip(a, b, strict=True):
        table = np.array([x, y])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            continue
        s, _, d, _ = chi2_contingency(table, correction=False)
        stat, dof = stat + s, dof + d
    return 1.0 if dof == 0 else float(chi2.sf(stat, dof))


@pytest.fixture
def patched_serve(monkeypatch):
    """:func:`patch_transformers_serve` applied in this process, undone afterwards."""
    from transformers.cli.serving import chat_completion as cc
    from transformers.cli.serving import model_manager as mm
    from transformers.cli.serving import utils as su

    from divtune.serve.server import patch_transformers_serve

    for obj, attr in ((mm.ModelManager, "get_gen_models"), (su, "get_response_template"),
                      (cc.ChatCompletionHandler, "_valid_params_class"), (cc.ChatCompletionHandler, "_unused_fields"),
                      (cc.ChatCompletionHandler, "_build_generation_config"),
                      (cc.ChatCompletionHandler, "_non_streaming")):
        monkeypatch.setattr(obj, attr, obj.__dict__[attr])  # restored at teardown
    patch_transformers_serve("/models/pinned")
    return su, mm, cc


def test_the_response_parser_only_where_the_chat_template_has_its_anchor(patched_serve, toy_model_dir):
    """transformers serve picks Qwen's response parser for every qwen2 model: kept for a ChatML template
    (Qwen2.5-Instruct: the answer follows ``<|im_start|>assistant``), dropped for the toy's own template, which has no
    such anchor (the parser then returned prompt + answer as the content)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    su, mm, _ = patched_serve
    qwen2 = SimpleNamespace(config=SimpleNamespace(model_type="qwen2"))
    toy = AutoTokenizer.from_pretrained(toy_model_dir)
    assert su.get_response_template(toy, qwen2) is None
    chatml = AutoTokenizer.from_pretrained(toy_model_dir)
    chatml.chat_template = CHATML
    assert su.get_response_template(chatml, qwen2)["start_anchor"] == "<|im_start|>assistant\n"
    llama = SimpleNamespace(config=SimpleNamespace(model_type="llama"))  # SmolLM2: no parser either way
    assert su.get_response_template(chatml, llama) is None
    [entry] = mm.ModelManager.get_gen_models()  # /v1/models: the pinned model, not a scan of the hub cache
    assert entry["id"] == "/models/pinned" and entry["object"] == "model"


def test_request_sampling_settings_are_the_ones_used(patched_serve):
    """top_k from the request (accepted, not HTTP 422), off when neither the request nor the model sets it (not
    GenerationConfig's 50); temperature > 0 samples; n > 1 is one batched generate; a request's own
    generation_config stands."""
    import json as _json

    from transformers import GenerationConfig

    _, _, cc = patched_serve
    assert "top_k" in cc.ChatCompletionHandler._valid_params_class.__mutable_keys__ and "n" not in \
        cc.ChatCompletionHandler._unused_fields
    h = cc.ChatCompletionHandler.__new__(cc.ChatCompletionHandler)
    h.generation_state = SimpleNamespace(_compile=False)
    greedy_model = GenerationConfig(do_sample=False)
    g = h._build_generation_config({"temperature": 1.0, "max_tokens": 8, "n": 4}, greedy_model)
    assert g.top_k == 0 and g.do_sample and g.num_return_sequences == 4 and g.max_new_tokens == 8
    g = h._build_generation_config({"temperature": 1.0, "top_k": 7}, greedy_model)
    assert g.top_k == 7 and g.num_return_sequences in (None, 1)
    sent = _json.dumps({"do_sample": True, "top_k": 50, "temperature": 0.7})
    g = h._build_generation_config({"generation_config": sent, "n": 2}, GenerationConfig())
    assert g.top_k == 50 and g.temperature == 0.7 and g.num_return_sequences == 2
    g = h._build_generation_config({"temperature": 0.0, "n": 3}, GenerationConfig())
    assert not g.do_sample and g.num_return_sequences in (None, 1)  # greedy: one answer, the client repeats it


@pytest.fixture(scope="module")
def champion(tiny_gapo) -> str:
    """The tiny GAPO model (2 GRPOTrainer steps on the toy, merged) as v1 and ``@champion`` of a new name."""
    name = f"serve-champ-{uuid.uuid4().hex[:8]}"
    mv = reg.register_version(name, str(tiny_gapo.merged), None, uuid.uuid4().hex, {"divtune.decision": "promote"})
    reg.set_alias(name, reg.CHAMPION, mv.version)
    return f"models:/{name}@champion"


@pytest.fixture(scope="module")
def served(champion, tmp_path_factory):
    """``divtune serve --model models:/NAME@champion`` in its own process; ``(base_url, log_file)``."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "divtune.cli", "serve", "--model", champion, "--port", str(port),
                             "--log", str(log), "--timeout", "240"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    try:
        while True:
            assert proc.poll() is None, f"divtune serve exited {proc.returncode}: {proc.stdout.read()[-2000:]}"
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, "divtune serve not healthy after 300 s"
            time.sleep(1)
        yield base, log
    finally:
        proc.send_signal(signal.SIGTERM)  # divtune serve stops its model server on SIGTERM too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_served_champion_answers_like_the_in_process_one(served, champion, cli, tmp_path):
    base, log = served
    models = requests.get(base + "/v1/models", timeout=10)
    assert models.status_code == 200, models.text  # was HTTP 500 (transformers serve scanned a missing hub cache)
    [entry] = models.json()["data"]
    prompt = ("Please select one from these options: [Mercury, Venus, Earth, Mars]. "
              "Format your response as follows: <answer>selected_item</answer>.")
    r = requests.post(base + "/v1/chat/completions", timeout=60, json={
        "model": entry["id"], "messages": [{"role": "user", "content": prompt}], "n": 8, "temperature": 1.0,
        "max_tokens": 32, "seed": 0})
    assert r.status_code == 200, r.text
    contents = [c["message"]["content"] for c in r.json()["choices"]]
    assert len(contents) == 8  # n samples in one request
    for c in contents:  # only the model's answer: no prompt text, no special tokens
        assert "Please select" not in c and "<|bos|>" not in c and "Format your response" not in c, c
        assert c.startswith("<answer>"), c

    # --timeout: the server samples one request at a time, and on a loaded CI machine the client's last concurrent
    # request waits for the others longer than the default 120 s (no effect on what is sampled)
    ep = cli("evaluate", "lists", "--endpoint", base, "--samples", SAMPLES, "--timeout", 900,
             "-o", tmp_path / "endpoint.json")
    assert ep.returncode == 0, ep.stderr[-2000:] + f"\n(server log {log}:)\n" + log.read_text()[-2000:]
    ip = cli("evaluate", "lists", "--model", champion, "--samples", SAMPLES, "-o", tmp_path / "in_process.json")
    assert ip.returncode == 0, ip.stderr[-2000:]
    served_res = json.loads((tmp_path / "endpoint.json").read_text())
    local_res = json.loads((tmp_path / "in_process.json").read_text())

    assert served_res["generator"]["backend"] == "openai" and served_res["generator"]["model"] == entry["id"]
    assert served_res["sampling"] == local_res["sampling"]  # the same settings recorded
    for res in (served_res, local_res):
        for row in res["per_list"]:
            assert not any("Please select" in t or "<|bos|>" in t for t in row["examples_invalid"]), row

    a, b = _counts(served_res), _counts(local_res)
    print(f"served: jsd_mean {served_res['jsd_mean']:.4f} invalid_rate {served_res['invalid_rate']:.4f}; in-process: "
          f"jsd_mean {local_res['jsd_mean']:.4f} invalid_rate {local_res['invalid_rate']:.4f}; "
          f"homogeneity p {_homogeneity_p(a, b):.3g}; JSD tolerance {4 * math.hypot(_jsd_mean_sd(a), _jsd_mean_sd(b)):.4f}")
    assert a.sum() == b.sum() == SAMPLES * len(local_res["per_list"])
    # Within sampling noise: (1) the answer distributions, list by list, are not told apart by a chi-square
    # homogeneity test at p > 0.001 (a false alarm once in a thousand runs; an echoed or differently-sampled
    # server, e.g. greedy or top-k 50 on a real LM, moves the counts far more);
    p = _homogeneity_p(a, b)
    assert p > 1e-3, (p, a.tolist(), b.tolist())
    # (2) the JSD means differ by at most 4 standard deviations of their difference (parametric bootstrap of each);
    tol = 4 * math.hypot(_jsd_mean_sd(a), _jsd_mean_sd(b))
    assert abs(served_res["jsd_mean"] - local_res["jsd_mean"]) <= tol, (served_res["jsd_mean"], local_res["jsd_mean"], tol)
    # (3) the invalid rates differ by at most 4 standard errors of a difference of two proportions (+1 answer).
    n = a.sum()
    pooled = (a[:, -1].sum() + b[:, -1].sum()) / (2 * n)
    se = math.sqrt(max(pooled * (1 - pooled), 1 / n) * 2 / n)
    assert abs(served_res["invalid_rate"] - local_res["invalid_rate"]) <= 4 * se + 1 / n


def test_a_server_that_dies_on_start_is_one_line_naming_its_log(tmp_path):
    from divtune.errors import DivtuneError
    from divtune.serve.server import wait_healthy

    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; print('OSError: no such model'); sys.exit(3)"],
                                stdout=out, stderr=subprocess.STDOUT)
        proc.wait()
    with pytest.raises(DivtuneError) as exc:
        wait_healthy(f"http://127.0.0.1:{free_port()}", proc, timeout=30, log_file=log)
    assert str(exc.value) == (f"model server exited with code 3 before becoming healthy; its log: {log} "
                              "(last line: OSError: no such model)")
