"""Loading models safely, and resolving a :class:`~divtune.config.ModelConfig` to a local directory.

Weights load from safetensors only (never a pickle), ``trust_remote_code`` is off unless the
config says so, and a bad path is a one-line :class:`~divtune.errors.DivtuneError` before
transformers tries a hub look-up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def check_model_dir(path: str | os.PathLike) -> Path:
    """A readable transformers model directory with safetensors weights, or a DivtuneError."""
    p = Path(path)
    if not p.exists():
        raise DivtuneError(f"model path does not exist: {p}")
    if not p.is_dir():
        raise DivtuneError(f"model path is not a directory: {p}")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise DivtuneError(f"model directory {p} has no config.json")
    try:
        json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DivtuneError(f"model directory {p} has a corrupted config.json") from None
    if not list(p.glob("*.safetensors")):
        if list(p.glob("*.bin")) or list(p.glob("*.pt")):
            raise DivtuneError(f"model directory {p} holds pickle weights only; divtune loads safetensors only")
        raise DivtuneError(f"model directory {p} has no *.safetensors weights")
    return p


def load_model_and_tokenizer(path: str | os.PathLike, *, dtype: str = "auto", device: str | None = None,
                             trust_remote_code: bool = False) -> tuple[Any, Any]:
    p = check_model_dir(path)  # before the heavy imports: a bad path is a one-line error in a second
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if os.environ.get("DIVTUNE_NO_PROGRESS") == "1":  # no "Loading weights" bars in CI logs
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    torch_dtype: Any = _DTYPES.get(dtype, "auto")
    if torch_dtype == "auto":
        torch_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(
            p, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DivtuneError(f"cannot load model from {p}: {' '.join(str(exc).split())[:300]}") from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device), tokenizer


def resolve_base_model(model_cfg: Any, *, progress: bool = True) -> Path:
    """Local directory of the configured base model (building/converting/downloading it if needed)."""
    src = model_cfg.source
    if src == "toy":
        from divtune.train.toy_model import ensure_toy_model

        return ensure_toy_model(model_cfg.toy, progress=progress)
    if src == "smollm2":
        from divtune.train.smollm2 import ensure_smollm2

        return ensure_smollm2()
    if src == "path":
        return check_model_dir(model_cfg.path)
    if src == "hub":
        return _download_hub(model_cfg.hub_id)
    raise DivtuneError(f"unknown model source {src!r}")  # pragma: no cover - config validation


def _download_hub(hub_id: str) -> Path:
    """Snapshot a hub model (clusters with a hub or mirror; ``HF_ENDPOINT`` selects a mirror)."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(hub_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as exc:  # noqa: BLE001 - any hub failure is a user-facing error here
        raise DivtuneError(f"cannot download {hub_id!r} from the hub: {' '.join(str(exc).split())[:200]}") from None
    return check_model_dir(path)
