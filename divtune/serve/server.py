"""Serve a model over the OpenAI-compatible API: vLLM on GPU, ``transformers serve`` on CPU.

Both expose ``/v1/chat/completions`` (with ``n`` samples per request: the diverse-sampling call) and
``/v1/models``; evaluation talks to either through :class:`divtune.evaluate.generation.OpenAIGenerator`.
``--model`` takes a local directory or a registry URI (``models:/NAME@champion``), fetched first.

``transformers serve`` runs through this module (``python -m divtune.serve.server MODEL_DIR ...``), which fixes, in
the server's own process, what transformers 5.23's server gets wrong for one pinned local model (see
:func:`patch_transformers_serve`): ``/v1/models`` lists that model (it scanned the hub cache: HTTP 500 where there is
none, and never the pinned directory), completions carry only the model's answer (a qwen2-architecture model with
its own chat template, like the toy, got prompt + answer), and the request's sampling settings are the ones used.
The server's output goes to a log file (``divtune serve --log``; default under ``$DIVTUNE_HOME/logs``) that errors
name.
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

from divtune.errors import DivtuneError, one_line


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
    _exe("transformers")  # the [serving] extra: one line if it is missing
    return [sys.executable, "-m", "divtune.serve.server", str(model_dir), "--host", host, "--port", str(port),
            "--device", "cpu", "--dtype", "float32", "--log-level", "warning"]


# --------------------------------------------------------------------------------------
# transformers serve, fixed for one pinned model (runs in the server's process)
# --------------------------------------------------------------------------------------


def _anchors_in_prompt(tokenizer, template: dict) -> bool:
    """Whether the chat template's generation prompt contains the response template's ``start_anchor`` (where the
    parser starts reading the answer); a template without one is read from the start of the completion."""
    anchors = template.get("start_anchor")
    if not anchors:
        return True
    anchors = [anchors] if isinstance(anchors, str) else list(anchors)
    try:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                               add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - no usable chat template: keep transformers' choice
        return True
    return any(a in prompt for a in anchors)


def patch_transformers_serve(model_id: str) -> None:
    """Fix ``transformers serve`` (5.23) for the one model it is pinned to, ``model_id`` (a local directory):

    * ``GET /v1/models`` scanned the hub cache (``CacheNotFound``, HTTP 500, where there is none) and never listed the
      pinned model, so a client could not discover the one id the server accepts: it now lists exactly that id.
    * The response parser is chosen by ``model_type``: every ``qwen2`` model gets Qwen's, which starts reading after
      ``<|im_start|>assistant\\n``.  A qwen2-architecture model with another chat template (the toy) has no such
      anchor, so the parser read the whole prompt as the answer: ``content`` was prompt + answer.  Where the chat
      template's generation prompt lacks the anchor, no parser is used: ``content`` is the decoded new tokens only
      (special tokens skipped), as in-process generation decodes them.
    * Sampling as the request says: ``top_k`` is accepted (the OpenAI schema lacks it: HTTP 422) and, when the
      request and the model's ``generation_config.json`` leave it unset, off (vLLM's default and divtune's
      ``SamplingParams.top_k=0``), not ``GenerationConfig``'s global default of 50; ``temperature > 0`` samples even
      where the model's generation config says ``do_sample: false`` (it decoded greedily).
    * ``n`` samples in one request, sampled as one batch (``num_return_sequences``), seeded by the request's
      ``seed`` in the inference thread: it ignored ``n`` and returned one choice, so a client asked n times.
    """
    import json
    import time as _time

    from transformers.cli.serving import chat_completion as cc
    from transformers.cli.serving import model_manager as mm
    from transformers.cli.serving import utils as su

    created = int(_time.time())
    mm.ModelManager.get_gen_models = staticmethod(  # type: ignore[method-assign]
        lambda cache_dir=None: [{"id": model_id, "object": "model", "owned_by": "divtune", "created": created}])

    original_template = su.get_response_template
    fits: dict[int, bool] = {}

    def get_response_template(processor, model):
        tmpl = original_template(processor, model)
        if tmpl is None:
            return None
        tok = getattr(processor, "tokenizer", processor)
        if id(tok) not in fits:
            fits[id(tok)] = _anchors_in_prompt(tok, tmpl)
        return tmpl if fits[id(tok)] else None

    su.get_response_template = get_response_template  # build_response_parser / parse_assistant_message read it

    class Params(cc.TransformersCompletionCreateParamsStreaming, total=False):
        top_k: int

    cc.ChatCompletionHandler._valid_params_class = Params
    original_build = cc.ChatCompletionHandler._build_generation_config
    original_non_streaming = cc.ChatCompletionHandler._non_streaming
    seeds: dict[int, int | None] = {}  # id(generation config) -> the request's seed, for the n-sample path

    def build_generation_config(self, body, model_generation_config, use_cb=False):
        g = original_build(self, body, model_generation_config, use_cb=use_cb)
        try:  # a request's own generation_config (JSON) replaces the model's: what it sets stands
            explicit = json.loads(body["generation_config"]) if body.get("generation_config") else {}
        except (TypeError, ValueError):
            explicit = {}
        if body.get("top_k") is not None:
            g.top_k = int(body["top_k"])
        elif "top_k" not in explicit and model_generation_config.top_k is None:
            g.top_k = 0
        if body.get("temperature") is not None and float(body["temperature"]) > 0 and "do_sample" not in explicit:
            g.do_sample = True
        n = int(body.get("n") or 1)
        if n > 1 and g.do_sample and not use_cb and not body.get("stream"):  # greedy: one answer (all n alike)
            g.num_return_sequences = n
            seeds[id(g)] = body.get("seed")
        return g

    async def non_streaming(self, request_id, model, processor, model_id, inputs, gen_config, gen_manager,
                            tools=None):
        if getattr(gen_config, "num_return_sequences", 1) in (None, 1):
            return await original_non_streaming(self, request_id, model, processor, model_id, inputs, gen_config,
                                                gen_manager=gen_manager, tools=tools)
        from fastapi.responses import JSONResponse
        from openai.types.completion_usage import CompletionUsage

        seed = seeds.pop(id(gen_config), None)

        def generate():
            if seed is not None:
                su.set_torch_seed(int(seed))  # in the inference thread, just before sampling: reproducible
            return model.generate(**inputs, generation_config=gen_config, tokenizer=processor)

        sequences = await gen_manager.async_submit(generate)
        input_len = inputs["input_ids"].shape[-1]
        defaults = model.generation_config  # generate() fills what the request's config leaves unset from it
        eos = gen_config.eos_token_id if gen_config.eos_token_id is not None else defaults.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        pad = gen_config.pad_token_id if gen_config.pad_token_id is not None else defaults.pad_token_id
        body, used = None, 0
        choices = []
        for i, row in enumerate(sequences[:, input_len:]):
            ids = row.tolist()
            stop = next((j for j, t in enumerate(ids) if t in eos), None)
            kept = ids if stop is None else ids[: stop + 1]
            kept = [t for t in kept if t != pad or t in eos]
            used += len(kept)
            text = processor.decode(kept, skip_special_tokens=True)
            content, reasoning, _ = su.parse_assistant_message(processor, model, kept, input_ids=inputs["input_ids"],
                                                               cleaned_content=text)
            finish = "stop" if stop is not None or len(kept) < (gen_config.max_new_tokens or 0) else "length"
            one = self._build_completion(request_id, content, model_id, finish_reason=finish,
                                         reasoning_content=reasoning)
            body = body or one
            choices.append({**one["choices"][0], "index": i})
        body["choices"] = choices
        body["usage"] = CompletionUsage(prompt_tokens=input_len, completion_tokens=used,
                                        total_tokens=input_len + used).model_dump()
        return JSONResponse(body, media_type="application/json")

    cc.ChatCompletionHandler._build_generation_config = build_generation_config
    cc.ChatCompletionHandler._non_streaming = non_streaming
    cc.ChatCompletionHandler._unused_fields = frozenset(cc.ChatCompletionHandler._unused_fields - {"n"})


def main(argv: list[str] | None = None) -> int:
    """``python -m divtune.serve.server MODEL_DIR [--host H] [--port P] [--device D] [--dtype T] [--log-level L]``:
    ``transformers serve MODEL_DIR`` with :func:`patch_transformers_serve` applied."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m divtune.serve.server")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--log-level", default="warning")
    a = p.parse_args(argv)
    patch_transformers_serve(a.model)
    from transformers.cli.serve import Serve

    Serve(force_model=a.model, host=a.host, port=a.port, device=a.device, dtype=a.dtype, log_level=a.log_level)
    return 0


def default_log_file(host: str, port: int) -> Path:
    """Where a server's output goes unless ``--log`` says: ``$DIVTUNE_HOME/logs/serve-HOST-PORT.log``."""
    from divtune import paths

    return paths.home() / "logs" / f"serve-{host}-{port}.log"


def _log_tail(log_file: Path | None) -> str:
    """``; its log: FILE (last line: ...)`` for an error message."""
    if log_file is None:
        return ""
    last = ""
    try:
        lines = [ln for ln in log_file.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        last = one_line(lines[-1], 200) if lines else ""
    except OSError:
        pass
    return f"; its log: {log_file}" + (f" (last line: {last})" if last else "")


def wait_healthy(base_url: str, proc: subprocess.Popen | None = None, timeout: float = 300.0,
                 log_file: Path | None = None) -> None:
    """Poll ``/health`` (vLLM and transformers serve both answer it) until it returns 200."""
    import requests

    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DivtuneError(f"model server exited with code {proc.returncode} before becoming healthy"
                               + _log_tail(log_file))
        try:
            r = requests.get(base_url.rstrip("/") + "/health", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise DivtuneError(f"model server at {base_url} not healthy after {timeout:.0f} s ({last})" + _log_tail(log_file))


@contextlib.contextmanager
def running_server(model: str, *, backend: str = "auto", host: str = "127.0.0.1", port: int = 8000,
                   timeout: float = 300.0, log_file: str | os.PathLike | None = None) -> Iterator[tuple[str, str]]:
    """Start a server for ``model``; yield ``(base_url, model_id)``; stop it on exit.  Its output goes to
    ``log_file`` (default :func:`default_log_file`), which a failure to start names."""
    from divtune.models.resolve import resolve_model

    model_dir = resolve_model(model)
    chosen = pick_backend(backend)
    cmd = server_command(model_dir, chosen, host, port, served_name=model_dir.name)
    log_path = Path(log_file) if log_file else default_log_file(host, port)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DivtuneError(f"cannot write the server log {log_path}: {exc.strerror or exc}") from None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    except BaseException:
        log.close()
        raise
    base = f"http://{host}:{port}"
    try:
        wait_healthy(base, proc, timeout, log_path)
        # the id requests must name (and /v1/models lists): vLLM's --served-model-name, transformers' pinned path
        yield base, (model_dir.name if chosen == "vllm" else str(model_dir))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def curl_example(base_url: str, model_id: str, n: int = 8) -> str:
    return (f"curl -s {base_url}/v1/chat/completions -H 'Content-Type: application/json' -d '"
            '{"model": "' + model_id + '", "n": ' + str(n) + ', "temperature": 1.0, "max_tokens": 24, '
            '"messages": [{"role": "user", "content": "Please select one from these options: '
            '[Mercury, Venus, Earth, Mars]. Format your response as follows: <answer>selected_item</answer>."}]}'
            "'")


if __name__ == "__main__":
    sys.exit(main())
