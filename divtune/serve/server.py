"""Serve a model over the OpenAI-compatible API: vLLM on GPU, ``transformers serve`` on CPU.

Both expose ``/v1/chat/completions`` (with ``n`` samples per request: the diverse-sampling call) and
``/v1/models``; evaluation talks to either through :class:`divtune.evaluate.generation.OpenAIGenerator`.
``--model`` takes a local directory or a registry URI (``models:/NAME@champion``), fetched first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from divtune.errors import DivtuneError


def pick_backend(backend: str = "auto") -> str:
    if backend not in ("auto", "vllm", "transformers"):
        raise DivtuneError(f"unknown serving backend {backend!r} (auto, vllm, transformers)")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "transformers"


def _exe(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise DivtuneError(f"the {name!r} command is not installed in this environment")
    return found


def server_command(model_dir: Path, backend: str, host: str, port: int, served_name: str | None = None,
                   api_key_env: str = "DIVTUNE_API_KEY", gpu_memory_utilization: float = 0.9) -> list[str]:
    if backend == "vllm":
        cmd = [_exe("vllm"), "serve", str(model_dir), "--host", host, "--port", str(port),
               "--served-model-name", served_name or model_dir.name,
               "--gpu-memory-utilization", str(gpu_memory_utilization), "--generation-config", "auto"]
        if os.environ.get(api_key_env):
            cmd += ["--api-key", os.environ[api_key_env]]  # vLLM also reads VLLM_API_KEY
        return cmd
    return [_exe("transformers"), "serve", str(model_dir), "--host", host, "--port", str(port), "--device", "cpu",
            "--dtype", "float32", "--log-level", "warning"]


def wait_healthy(base_url: str, proc: subprocess.Popen | None = None, timeout: float = 300.0) -> None:
    """Poll ``/health`` (vLLM and transformers serve both answer it) until it returns 200."""
    import requests

    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DivtuneError(f"model server exited with code {proc.returncode} before becoming healthy")
        try:
            r = requests.get(base_url.rstrip("/") + "/health", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise DivtuneError(f"model server at {base_url} not healthy after {timeout:.0f} s ({last})")


@contextlib.contextmanager
def running_server(model: str, *, backend: str = "auto", host: str = "127.0.0.1", port: int = 8000,
                   timeout: float = 300.0, log_file: str | os.PathLike | None = None) -> Iterator[tuple[str, str]]:
    """Start a server for ``model``; yield ``(base_url, model_id)``; stop it on exit."""
    from divtune.models.resolve import resolve_model

    model_dir = resolve_model(model)
    chosen = pick_backend(backend)
    cmd = server_command(model_dir, chosen, host, port, served_name=model_dir.name)
    log = open(log_file, "wb") if log_file else subprocess.DEVNULL  # noqa: SIM115 - closed below
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://{host}:{port}"
    try:
        wait_healthy(base, proc, timeout)
        # the id requests must name: vLLM serves --served-model-name, transformers serve the forced path
        yield base, (model_dir.name if chosen == "vllm" else str(model_dir))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_file:
            log.close()


def curl_example(base_url: str, model_id: str, n: int = 8) -> str:
    return (f"curl -s {base_url}/v1/chat/completions -H 'Content-Type: application/json' -d '"
            '{"model": "' + model_id + '", "n": ' + str(n) + ', "temperature": 1.0, "max_tokens": 24, '
            '"messages": [{"role": "user", "content": "Please select one from these options: '
            '[Mercury, Venus, Earth, Mars]. Format your response as follows: <answer>selected_item</answer>."}]}'
            "'")
