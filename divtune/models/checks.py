"""Is this a model (or adapter) directory divtune will load?  One-line errors before any heavy import."""

from __future__ import annotations

import json
import os
from pathlib import Path

from divtune.errors import DivtuneError


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



def check_adapter_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DivtuneError(f"adapter directory does not exist: {p}")
    if not (p / "adapter_config.json").is_file():
        raise DivtuneError(f"adapter directory {p} has no adapter_config.json")
    if not (p / "adapter_model.safetensors").is_file():
        raise DivtuneError(f"adapter directory {p} has no adapter_model.safetensors")
    return p

