"""Where divtune keeps caches and its embedded default stores.

``$DIVTUNE_HOME`` (default ``~/.cache/divtune``) holds the content-addressed model cache, the
training checkpoints and, unless ``MLFLOW_TRACKING_URI`` is set, the embedded MLflow store
(SQLite tracking + registry, artifacts beside it).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("DIVTUNE_HOME", "~/.cache/divtune")).expanduser()


def model_cache() -> Path:
    return home() / "models"


def checkpoint_root() -> Path:
    return home() / "checkpoints"


def default_tracking_uri() -> str:
    return f"sqlite:///{home() / 'mlflow.db'}"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` (the standard variable) or the embedded SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
