"""Generation backends behind one interface.

``Generator.generate(prompts, params) -> list[list[str]]`` returns ``params.n`` completions per
prompt.  Prompts are chat messages (``[{"role": "user", "content": ...}]``) or plain strings
(wrapped as one user message).  Every backend sends all of :class:`~divtune.models.sampling.SamplingParams`
explicitly, so no field comes from the model's ``generation_config.json`` or a server's defaults, and
``describe()`` says how it sent them.  Backends:

* :class:`HFGenerator` — in-process transformers (CPU or GPU), batched, progress bar;
* :class:`OpenAIGenerator` — any OpenAI-compatible server (``vllm serve``, ``transformers
  serve``, KServe), concurrent requests, ``n`` samples per request;
* :class:`VLLMGenerator` — vLLM offline engine (GPU images only).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, Protocol

from divtune.errors import DivtuneError, one_line
from divtune.models.sampling import SamplingParams

__all__ = ["SamplingParams", "Generator", "HFGenerator", "OpenAIGenerator", "VLLMGenerator", "make_generator"]

Messages = list[dict[str, str]]
Prompt = Messages | str


class Generator(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]: ...

    def describe(self) -> dict[str, Any]: ...


def as_messages(prompt: Prompt) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def plan(num_prompts: int, params: SamplingParams, backend: str) -> int:
    """The completions a generate call will make: bounded (DIVTUNE_MAX_TOTAL_SAMPLES), and announced when large."""
    import sys

    from divtune.files import limit

    total = num_prompts * params.n
    cap = limit("TOTAL_SAMPLES")
    if total > cap:
        raise DivtuneError(f"{num_prompts} prompts x {params.n} samples = {total:,} completions, over the limit of "
                           f"{cap:,} (DIVTUNE_MAX_TOTAL_SAMPLES)")
    if total >= 20_000:
        print(f"divtune: sampling {num_prompts} prompts x {params.n} = {total:,} completions ({backend}, up to "
              f"{params.max_new_tokens} new tokens each)", file=sys.stderr, flush=True)
    return total


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=os.environ.get("DIVTUNE_NO_PROGRESS") == "1")


class HFGenerator:
    """transformers in-process sampling; ``prompt x n`` rows are batched ``batch_size`` at a time."""

    name = "transformers"

    def __init__(self, model_dir: str | os.PathLike, *, batch_size: int = 64, device: str | None = None,
                 dtype: str = "auto", trust_remote_code: bool = False) -> None:
        from divtune.models.loading import load_model_and_tokenizer

        self.model_dir = str(model_dir)
        self.model, self.tokenizer = load_model_and_tokenizer(
            self.model_dir, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_dir, "batch_size": self.batch_size,
                "device": str(self.model.device), "sampling_sent_as": "GenerationConfig"}

    def generation_config(self, params: SamplingParams):
        """The ``GenerationConfig`` of a call: every sampling field from ``params``; only the special tokens
        (end of text, padding) come from the model's ``generation_config.json``."""
        from transformers import GenerationConfig

        return GenerationConfig(**params.hf_generation_config(), pad_token_id=self.tokenizer.pad_token_id)

    def render(self, prompt: Prompt) -> str:
        return self.tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)

    def context_length(self) -> int | None:
        """The model's positions (``max_position_embeddings`` or ``n_positions``), if it says."""
        c = self.model.config
        n = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
        return int(n) if isinstance(n, int) and n > 0 else None

    def _check_lengths(self, texts: Sequence[str], params: SamplingParams) -> None:
        """Every prompt plus ``max_new_tokens`` fits the model's context, before any sampling starts."""
        ctx = self.context_length()
        if ctx is None:
            return
        for i, text in enumerate(texts):
            n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if n + params.max_new_tokens > ctx:
                raise DivtuneError(f"prompt {i + 1} is {n} tokens; with max_new_tokens {params.max_new_tokens} it "
                                   f"exceeds the model's context of {ctx} positions ({self.model_dir})")

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        import torch

        plan(len(prompts), params, self.name)
        texts = [self.render(p) for p in prompts]
        self._check_lengths(texts, params)
        rows = [(i, t) for i, t in enumerate(texts) for _ in range(params.n)]
        out: list[list[str]] = [[] for _ in texts]
        torch.manual_seed(params.seed)
        gen_kwargs: dict[str, Any] = {"generation_config": self.generation_config(params)}
        with _progress(len(rows), f"sampling ({self.name})") as bar, torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                enc = self.tokenizer([t for _, t in chunk], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.model.device)
                ids = self.model.generate(**enc, **gen_kwargs)
                new = ids[:, enc["input_ids"].shape[1]:]
                decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                for (i, _), text in zip(chunk, decoded, strict=True):
                    out[i].append(text)
                bar.update(len(chunk))
        return out


class EndpointRejected(DivtuneError):
    """The endpoint answered a 4xx: the request itself was refused."""

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status, self.body = status, body


#: How a request carries the fields of the contract beyond the OpenAI schema (temperature, top_p, max_tokens, seed
#: and n are standard): ``vllm`` as extra body fields (``top_k``, ``min_p``, ``repetition_penalty``: vLLM's server,
#: and servers that copy its API); ``transformers`` as ``generation_config``, a JSON string that ``transformers
#: serve`` uses *instead of* the model's generation config (it refuses the extra fields with HTTP 422).
SERVER_KINDS = ("vllm", "transformers")


class OpenAIGenerator:
    """An OpenAI-compatible chat-completions endpoint; ``n`` samples per request, requests concurrent.

    ``server``: ``auto`` (``/v1/models`` owned by vLLM: ``vllm``; otherwise one probe request of one token in the
    vLLM form, and the ``transformers`` form if the server refuses its extra fields), or one of
    :data:`SERVER_KINDS`.  A server that takes neither form is refused: its own defaults would decide top_k,
    min_p and the repetition penalty."""

    name = "openai"

    def __init__(self, endpoint: str, *, model: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 3, server: str = "auto") -> None:
        if server not in ("auto", *SERVER_KINDS):
            raise DivtuneError(f"unknown endpoint server kind {server!r} (auto, {', '.join(SERVER_KINDS)})")
        self.base = endpoint.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        self.api_key = api_key if api_key is not None else os.environ.get("DIVTUNE_API_KEY", "")
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.server = server
        self._owned_by: str | None = None
        self.model = model or self._first_model()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "endpoint": self.base, "model": self.model, "concurrency": self.concurrency,
                "server": self.server, "sampling_sent_as": {"vllm": "extra body fields",
                                                            "transformers": "generation_config"}.get(self.server)}

    def payload(self, prompt: Prompt, params: SamplingParams, *, n: int, seed: int,
                server: str | None = None) -> dict[str, Any]:
        """One chat-completions request body: every field of the contract, in the form ``server`` honours."""
        import json

        kind = server or self.server
        body: dict[str, Any] = {"model": self.model, "messages": as_messages(prompt), "n": n,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_new_tokens, "seed": seed}
        if kind == "vllm":
            v = params.vllm_kwargs()
            body.update(top_k=v["top_k"], min_p=v["min_p"], repetition_penalty=v["repetition_penalty"])
        elif kind == "transformers":
            body["generation_config"] = json.dumps(params.hf_generation_config(), sort_keys=True)
        else:  # pragma: no cover - resolve_server runs first
            raise AssertionError(kind)
        return body

    def resolve_server(self, params: SamplingParams) -> str:
        """Which form this endpoint honours (see the class); decided once, by a one-token probe if need be."""
        if self.server != "auto":
            return self.server
        if self._owned_by == "vllm":
            self.server = "vllm"
            return self.server
        probe = dataclasses.replace(params, n=1, max_new_tokens=1)
        rejected = []
        for kind in SERVER_KINDS:
            try:
                self._request("POST", "/chat/completions", self.payload("ping", probe, n=1, seed=0, server=kind))
            except EndpointRejected as exc:
                if exc.status not in (400, 422):  # not about the body's fields (auth, unknown model, ...)
                    raise
                rejected.append(f"{kind} form: HTTP {exc.status} {one_line(exc.body, 120)}")
                continue
            self.server = kind
            return kind
        raise DivtuneError(f"endpoint {self.base} refuses the sampling fields in both forms ({'; '.join(rejected)}); "
                           "divtune will not leave top_k/min_p/repetition_penalty to the server's defaults")

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One API call: connection failures and 5xx answers are retried (a line on stderr each time); a server
        that accepts the connection but does not answer within ``timeout`` seconds, a 4xx answer or a body that
        is not JSON is one line at once, naming the endpoint."""
        import sys
        import time

        import requests

        url = self.base + path
        last = ""
        for attempt in range(self.max_retries):
            if attempt:
                print(f"divtune: retrying endpoint {url} ({last}); {self.max_retries - attempt} tries left",
                      file=sys.stderr, flush=True)
                time.sleep(min(2**attempt, 8))
            try:
                r = requests.request(method, url, json=payload, headers=self._headers(),
                                     timeout=(min(10.0, self.timeout), self.timeout))
            except requests.ReadTimeout:
                raise DivtuneError(f"endpoint {url} accepted the connection but did not answer within "
                                   f"{self.timeout:g} s (--timeout)") from None
            except requests.RequestException as exc:
                last = one_line(exc, 160)
                continue
            if r.status_code >= 500:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                raise EndpointRejected(f"endpoint {url} answered HTTP {r.status_code}: {one_line(r.text, 200)}",
                                       r.status_code, r.text)
            try:
                body = r.json()
            except ValueError:
                kind = r.headers.get("content-type", "unknown content type")
                raise DivtuneError(f"endpoint {url} answered {kind}, not JSON: is it an OpenAI-compatible API? "
                                   f"({one_line(r.text, 80)})") from None
            if not isinstance(body, dict):
                raise DivtuneError(f"endpoint {url} answered JSON that is not an object")
            return body
        raise DivtuneError(f"endpoint {self.base} is unreachable after {self.max_retries} tries: {last}")

    def _first_model(self) -> str:
        data = self._request("GET", "/models").get("data") or []
        if not data:
            raise DivtuneError(f"endpoint {self.base} serves no model")
        self._owned_by = data[0].get("owned_by") if isinstance(data[0], dict) else None
        return data[0]["id"]

    def _texts(self, choices: Any) -> list[str]:
        """The completions' texts, in index order; a malformed answer is one line naming the endpoint."""
        try:
            ordered = sorted(choices, key=lambda c: c.get("index", 0))
            return [str(c["message"]["content"] or "") for c in ordered]
        except (AttributeError, KeyError, TypeError):
            raise DivtuneError(f"endpoint {self.base}/chat/completions answered choices without message.content "
                               "(not an OpenAI-compatible chat API?)") from None

    def _one(self, prompt: Prompt, params: SamplingParams, seed: int) -> list[str]:
        payload = self.payload(prompt, params, n=params.n, seed=seed)
        choices = self._request("POST", "/chat/completions", payload).get("choices", [])
        texts = self._texts(choices)
        # Servers that ignore ``n`` return one choice: ask again until we have n.
        while len(texts) < params.n:
            payload["n"] = params.n - len(texts)
            payload["seed"] = seed + len(texts)
            more = self._request("POST", "/chat/completions", payload).get("choices", [])
            if not more:
                raise DivtuneError(f"endpoint {self.base} returned no choices")
            texts += self._texts(more)
        return texts[: params.n]

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        plan(len(prompts), params, self.name)
        self.resolve_server(params)
        out: list[list[str]] = [[] for _ in prompts]
        # transformers serve runs one generate at a time: parallel requests would only queue, and each request's
        # timeout would count the others' work
        workers = 1 if self.server == "transformers" else self.concurrency
        with _progress(len(prompts) * params.n, f"sampling ({self.name})") as bar, \
                ThreadPoolExecutor(workers) as pool:
            futures = {pool.submit(self._one, p, params, params.seed + 1000 * i): i for i, p in enumerate(prompts)}
            for fut, i in futures.items():
                out[i] = fut.result()
                bar.update(params.n)
        return out


class VLLMGenerator:
    """vLLM's offline engine (GPU images only)."""

    name = "vllm"

    def __init__(self, model_dir: str, *, gpu_memory_utilization: float = 0.8, trust_remote_code: bool = False,
                 max_model_len: int | None = None) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - GPU images only
            raise DivtuneError("the vllm backend needs the 'gpu' extra (pip install divtune[gpu]) on a GPU machine") from exc
        self.model_dir = model_dir
        self.llm = LLM(model=model_dir, gpu_memory_utilization=gpu_memory_utilization,
                       trust_remote_code=trust_remote_code, max_model_len=max_model_len)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_dir, "sampling_sent_as": "SamplingParams"}

    def close(self) -> None:  # pragma: no cover - GPU images only
        """Shut the engine down and free its GPU memory (before another model loads in this process)."""
        import gc

        import torch

        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]:  # pragma: no cover
        from vllm import SamplingParams as VSP

        sp = VSP(**params.vllm_kwargs())
        outs = self.llm.chat([as_messages(p) for p in prompts], sp, use_tqdm=True)
        return [[o.text for o in out.outputs] for out in outs]


#: ``evaluate.backend`` / ``--backend`` for a local model: ``auto`` is vLLM offline where there is a GPU and vLLM
#: is installed (the eval image), in-process transformers elsewhere; the sampling contract is the same on both.
BACKENDS = ("auto", "hf", "vllm")


def pick_backend(backend: str = "auto") -> str:
    """``hf`` or ``vllm`` for a local model (see :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise DivtuneError(f"unknown generation backend {backend!r} ({', '.join(BACKENDS)})")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None else "hf"


def make_generator(model: str | None = None, endpoint: str | None = None, *, backend: str = "auto",
                   batch_size: int = 64, trust_remote_code: bool = False, timeout: float = 120.0,
                   server: str = "auto") -> Generator:
    """Pick a backend: an endpoint URL (``server``: see :class:`OpenAIGenerator`), else a local model directory
    or ``models:/NAME@alias`` URI on ``backend`` (see :data:`BACKENDS`)."""
    if (model is None) == (endpoint is None):
        raise DivtuneError("give exactly one of --model and --endpoint")
    if endpoint is not None:
        return OpenAIGenerator(endpoint, timeout=timeout, server=server)
    assert model is not None
    from divtune.models.resolve import resolve_model

    chosen = pick_backend(backend)
    path = resolve_model(model)
    if chosen == "vllm":
        return VLLMGenerator(str(path), trust_remote_code=trust_remote_code)
    return HFGenerator(path, batch_size=batch_size, trust_remote_code=trust_remote_code)
