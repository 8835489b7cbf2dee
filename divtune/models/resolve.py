"""Resolve what a user or a config names to a local model directory.

A :class:`~divtune.config.ModelConfig` (toy, SmolLM2, path, hub) via :func:`resolve_base_model`;
a ``--model`` argument (a directory or a registry URI ``models:/NAME@alias`` / ``models:/NAME/3``)
via :func:`resolve_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line
from divtune.models.checks import check_model_dir


def resolve_base_model(model_cfg: Any, *, progress: bool = True) -> Path:
    """Local directory of the configured base model (building/converting/downloading it if needed)."""
    src = model_cfg.source
    if src == "toy":
        from divtune.models.toy import ensure_toy_model

        return ensure_toy_model()  # seconds: no progress bar
    if src == "smollm2":
        from divtune.models.smollm2 import ensure_smollm2

        return ensure_smollm2()
    if src == "path":
        return check_model_dir(model_cfg.path)
    if src == "hub":
        return _download_hub(model_cfg.hub_id)
    raise DivtuneError(f"unknown model source {src!r}")  # pragma: no cover - config validation


def base_cached(model_cfg: Any) -> bool | None:
    """Whether a project-built base (the toy) is already in the content-hash cache; None for other sources."""
    if model_cfg.source != "toy":
        return None
    from divtune.models.toy import is_cached

    return is_cached()


def resolve_model(model: str) -> Path:
    """A checked local model directory for ``--model``: a directory, or a registry URI fetched via MLflow."""
    if model.startswith("models:/"):
        from divtune.registry.models import download_model_version

        return check_model_dir(download_model_version(model))
    return check_model_dir(model)


def _download_hub(hub_id: str) -> Path:
    """Snapshot a hub model (clusters with a hub or mirror; ``HF_ENDPOINT`` selects a mirror)."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(hub_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as exc:  # noqa: BLE001 - any hub failure is a user-facing error here
        raise DivtuneError(f"cannot download {hub_id!r} from the hub: {one_line(exc, 200)}") from None
    return check_model_dir(path)
