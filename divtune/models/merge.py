"""Merge a LoRA adapter into its base model: safetensors only, tokenizer and generation config
included, and a reload-and-generate check before the directory is published.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from divtune import outputs
from divtune.errors import DivtuneError, one_line
from divtune.models.checks import check_adapter_dir, check_model_dir


def reload_and_generate(model_dir: str | os.PathLike, prompt: str = "Please select one from these options: "
                        "[Mercury, Venus]. Format your response as follows: <answer>selected_item</answer>.",
                        max_new_tokens: int = 8) -> str:
    """Load ``model_dir`` from scratch and greedily generate once; return the completion text."""
    import torch

    from divtune.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(model_dir, device="cpu" if not torch.cuda.is_available() else None)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    if new.numel() == 0:
        raise DivtuneError(f"merged model in {model_dir} generated nothing")
    return tok.decode(new, skip_special_tokens=False)


def merge_lora(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               dtype: str = "auto", trust_remote_code: bool = False) -> dict[str, Any]:
    """``merge_and_unload`` the adapter into the base and write a self-contained model directory.

    The result is written to a temporary sibling, reloaded and made to generate, and only then
    moved to ``out_dir``: a failed merge leaves nothing behind.
    """
    check_model_dir(base_dir)  # before the heavy imports: bad paths are one-line errors in a second
    adapter = check_adapter_dir(adapter_dir)
    from peft import PeftModel

    from divtune.models.loading import load_model_and_tokenizer

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        base, tok = load_model_and_tokenizer(base_dir, dtype=dtype, device="cpu", trust_remote_code=trust_remote_code)
        try:
            peft_model = PeftModel.from_pretrained(base, str(adapter))
        except (ValueError, RuntimeError, KeyError) as exc:
            raise DivtuneError(f"adapter {adapter} does not fit base {base_dir}: {one_line(exc, 200)}") from None
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if (Path(base_dir) / "generation_config.json").is_file():
            shutil.copy2(Path(base_dir) / "generation_config.json", tmp / "generation_config.json")
        stray = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        if stray:
            raise DivtuneError(f"merge produced pickle files {stray}; refusing")
        sample = reload_and_generate(tmp)
        report = {
            "base": str(base_dir),
            "adapter": str(adapter),
            "parameters": int(sum(p.numel() for p in merged.parameters())),
            "reload_check_sample": sample,
            "files": sorted(p.name for p in tmp.iterdir()),
        }
        (tmp / "divtune_merge.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        outputs.mark(tmp, "merge")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
