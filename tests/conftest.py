"""Every test session gets its own divtune home and MLflow store; nothing touches ~/.cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def divtune_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("divtune-home")
    old = {k: os.environ.get(k) for k in ("DIVTUNE_HOME", "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "DIVTUNE_NO_PROGRESS")}
    os.environ["DIVTUNE_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["DIVTUNE_NO_PROGRESS"] = "1"
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def toy_model_dir(divtune_home):
    """The default toy base model, built once per session (cached by content hash)."""
    from divtune.models.toy import ensure_toy_model

    return ensure_toy_model()


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``divtune`` as a user would: a fresh process."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "divtune.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd or REPO, timeout=900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, s3_endpoint):
    """A real S3 API (moto server on loopback) for this test and every process it starts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    return s3_endpoint
