"""Semantic partitions of a group's responses into equivalence classes (DARLING).

One interface -- ``partition(texts) -> list[int]`` (a class id per response) -- and three
implementations: exact match after normalisation, sentence-embedding cosine similarity, and a
pairwise sequence classifier ("[CLS] s1 [SEP] s2 [SEP]" -> P(similar), :func:`encode_pairs`).  Pairwise
decisions are closed transitively with union-find.  The classifier path takes the reference implementation's
shortcut first: two responses of <= 5 unigrams are equivalent when 2 x shared >= the longer length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from divtune.errors import ConfigError, DivtuneError, one_line
from divtune.models.loading import load_sentence_model, load_sequence_classifier, local_model_path


class Partitioner(Protocol):
    name: str

    def partition(self, texts: Sequence[str]) -> list[int]: ...


def union_find(n: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Class id per element (0..k-1, in order of first appearance) of the transitive closure of ``pairs``:
    the connected components of the "equivalent" graph (scipy's ``connected_components``)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return []
    rows = np.fromiter((a for a, _ in pairs), dtype=np.int64, count=len(pairs))
    cols = np.fromiter((b for _, b in pairs), dtype=np.int64, count=len(pairs))
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    ids: dict[int, int] = {}
    return [ids.setdefault(int(c), len(ids)) for c in labels]


def unigram_shortcut(a: str, b: str, max_tokens: int = 5) -> bool | None:
    """Reference shortcut: both short -> equivalent iff 2*|shared unigrams| >= max length; else None (ask the model)."""
    ta, tb = a.lower().split(), b.lower().split()
    if len(ta) > max_tokens or len(tb) > max_tokens:
        return None
    return 2 * len(set(ta) & set(tb)) >= max(len(ta), len(tb), 1)


def _check_group(texts: Sequence[str]) -> None:
    if len(texts) < 2:
        raise DivtuneError(f"a DARLING group needs at least 2 responses, got {len(texts)}")


def dedupe(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Responses equal after lower-casing and whitespace collapsing are one response: the distinct ones, and
    for every text the index of its distinct representative (only distinct ones go to a model)."""
    keys: dict[str, int] = {}
    reps: list[str] = []
    idx: list[int] = []
    for t in texts:
        k = " ".join(t.lower().split())
        if k not in keys:
            keys[k] = len(reps)
            reps.append(t)
        idx.append(keys[k])
    return reps, idx


def expand(classes: Sequence[int], idx: Sequence[int]) -> list[int]:
    """Class ids of the distinct responses mapped back to every response (renumbered by first appearance)."""
    ids: dict[int, int] = {}
    return [ids.setdefault(classes[u], len(ids)) for u in idx]


def _check_threshold(t: float) -> float:
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"partition threshold must be in [0, 1], got {t}")
    return t


class ExactPartitioner:
    """Equivalent when equal after lower-casing and whitespace collapsing (a cheap baseline)."""

    name = "exact"

    def partition(self, texts: Sequence[str]) -> list[int]:
        _check_group(texts)
        keys = [" ".join(t.lower().split()) for t in texts]
        ids: dict[str, int] = {}
        return [ids.setdefault(k, len(ids)) for k in keys]


class EmbeddingPartitioner:
    """Equivalent when the cosine similarity of sentence embeddings is >= ``threshold``."""

    name = "embedding"

    def __init__(self, model_path: str | os.PathLike | None = None, threshold: float = 0.8,
                 device: str | None = None, batch_size: int = 64) -> None:
        self.threshold = _check_threshold(threshold)
        self.model, _ = load_sentence_model(model_path, device)
        self.batch_size = batch_size

    def partition(self, texts: Sequence[str]) -> list[int]:
        _check_group(texts)
        reps, idx = dedupe(texts)
        if len(reps) == 1:
            return [0] * len(texts)
        emb = self.model.encode(reps, batch_size=self.batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)
        sim = (emb @ emb.T).cpu().tolist()
        n = len(reps)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if sim[i][j] >= self.threshold]
        return expand(union_find(n, pairs), idx)


# The reference's CLS/SEP for a tokenizer that has none: Qwen's <|im_start|> / <|im_end|> (ids 151644 / 151645,
# what ``partition_reward_vllm_serve.py:30-33`` sets for its Qwen3-Embedding-4B classifier).
CHATML_CLS_SEP = ("<|im_start|>", "<|im_end|>")


def pair_special_ids(tokenizer) -> tuple[int, int]:
    """(cls, sep) token ids of the classifier input: the tokenizer's own CLS / SEP; where one is unset, the
    reference's Qwen choice (``<|im_start|>`` / ``<|im_end|>``) if the vocabulary has it; otherwise one line.
    BOS / EOS are deliberately not substituted: the reference never does, and a decoder classifier pools
    the final SEP, so it must be the token it is trained and used with.  A pad token equal to CLS or SEP is
    refused too (a last-token-pooling head skips pad ids, so it would pool s2's last token, not SEP)."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        vocab = tokenizer.get_vocab()
        cls = cls if cls is not None else vocab.get(CHATML_CLS_SEP[0])
        sep = sep if sep is not None else vocab.get(CHATML_CLS_SEP[1])
    if cls is None or sep is None:
        raise DivtuneError(f"the classifier's tokenizer ({type(tokenizer).__name__}) has no "
                           f"{'CLS' if cls is None else 'SEP'} token, so the reference's 'CLS s1 SEP s2 SEP' "
                           "input cannot be built: set cls_token and sep_token in its tokenizer_config.json "
                           "(or use a BERT-style encoder)")
    pad = tokenizer.pad_token_id
    if pad is not None and pad in (cls, sep):  # a last-token-pooling head skips pad ids: it would never see SEP
        raise DivtuneError(f"the classifier's tokenizer ({type(tokenizer).__name__}) pads with its "
                           f"{'SEP' if pad == sep else 'CLS'} token {tokenizer.convert_ids_to_tokens(pad)!r}, so "
                           "padded pairs lose their 'CLS s1 SEP s2 SEP' layout: set a distinct pad_token in its "
                           "tokenizer_config.json")
    return int(cls), int(sep)


def check_classifier_tokenizer(path: str | os.PathLike) -> None:
    """Cheap check of a local classifier directory (its tokenizer only, no model): refused, one line, when it
    cannot build the classifier input (:func:`pair_special_ids`).  A directory whose tokenizer does not load is
    left to :func:`divtune.models.loading.load_sequence_classifier`, which names what is wrong with it."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - reported by the classifier loader
        return
    if tok.pad_token is None and tok.eos_token is not None:  # what the loader does for decoder tokenizers
        tok.pad_token = tok.eos_token
    pair_special_ids(tok)


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, *, padding: bool = True,
                 return_tensors: str | None = None, special_ids: tuple[int, int] | None = None):
    """The classifier's input, in training (``divtune train-partitioner``) and in use alike, built as the
    reference builds it (``partition_reward_vllm_serve.py:58-69``): ``[CLS] s1 [SEP] s2 [SEP]`` with the
    tokenizer's own CLS / SEP (:func:`pair_special_ids`), each side tokenized without special tokens and cut to
    ``(max_length - 3) // 2`` tokens.  One sequence (no token type ids), right-padded when ``padding``."""
    cls, sep = special_ids or pair_special_ids(tokenizer)  # (a caller scoring many batches passes them once)
    half = (max_length - 3) // 2
    if half < 1:
        raise ConfigError(f"classifier max_length {max_length} leaves no room for the two texts (at least 5)")
    if not pairs:
        return {"input_ids": [], "attention_mask": []}
    side = dict(add_special_tokens=False, truncation=True, max_length=half)
    first = tokenizer([a for a, _ in pairs], **side)["input_ids"]
    second = tokenizer([b for _, b in pairs], **side)["input_ids"]
    ids = [[cls, *a, sep, *b, sep] for a, b in zip(first, second)]
    features = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
    if not padding:
        return features
    return tokenizer.pad(features, padding=True, return_tensors=return_tensors)


class ClassifierPartitioner:
    """A pairwise similarity classifier: "[CLS] s1 [SEP] s2 [SEP]" -> P(similar) = last class probability > threshold.

    Duplicates (equal after lower-casing and whitespace collapsing) are one response; every pair of distinct
    responses not settled by the unigram shortcut is scored, in batches of ``batch_size`` sorted by length.
    """

    name = "classifier"

    def __init__(self, model_path: str | os.PathLike, threshold: float = 0.5, device: str | None = None,
                 batch_size: int = 64, max_length: int = 512) -> None:
        self.threshold = _check_threshold(threshold)
        path = local_model_path(model_path, "classifier")
        self.tokenizer, self.model = load_sequence_classifier(path, "classifier")
        if self.model.config.num_labels < 2:
            raise DivtuneError(f"{path} has {self.model.config.num_labels} label(s); a similarity classifier needs 2")
        # a tokenizer that cannot build the input is refused before any scoring
        self.special_ids = pair_special_ids(self.tokenizer)
        self.model.eval().to(device or "cpu")
        self.batch_size = batch_size
        # never past the encoder's position table (a 512-position encoder asked for 4096 would fail mid-training)
        limit = getattr(self.tokenizer, "model_max_length", None)
        if not limit or limit > 1_000_000:  # "unset" in many tokenizers
            limit = getattr(self.model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, limit)
        self.pairs_scored = 0

    def similar_probs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch

        order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][0]) + len(pairs[k][1]))  # less padding
        out = [0.0] * len(pairs)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                chunk = order[s : s + self.batch_size]
                enc = encode_pairs(self.tokenizer, [pairs[k] for k in chunk], self.max_length,
                                   return_tensors="pt", special_ids=self.special_ids).to(self.model.device)
                probs = self.model(**enc).logits.float().softmax(-1)[:, -1].tolist()
                for k, p in zip(chunk, probs):
                    out[k] = p
        self.pairs_scored += len(pairs)
        return out

    def partition(self, texts: Sequence[str]) -> list[int]:
        _check_group(texts)
        reps, idx = dedupe(texts)  # duplicates are equivalent: only distinct responses are compared
        n = len(reps)
        same, ask = [], []
        for i in range(n):
            for j in range(i + 1, n):
                quick = unigram_shortcut(reps[i], reps[j])
                if quick is None:
                    ask.append((i, j))
                elif quick:
                    same.append((i, j))
        if ask:
            probs = self.similar_probs([(reps[i], reps[j]) for i, j in ask])
            same += [p for p, pr in zip(ask, probs) if pr > self.threshold]
        return expand(union_find(n, same), idx)


def make_partitioner(kind: str, path: str | None = None, threshold: float = 0.8, *, max_length: int = 512,
                     device: str | None = None) -> Partitioner:
    """``device``: where a model-based partitioner runs (training passes the rank's device); None: CPU."""
    if kind == "exact":
        return ExactPartitioner()
    if kind == "embedding":
        return EmbeddingPartitioner(path, threshold, device=device)
    if kind == "classifier":
        if not path:
            raise ConfigError("train.darling.partitioner_path is required for the classifier partitioner")
        return ClassifierPartitioner(path, threshold, device=device, max_length=max_length)
    raise ConfigError(f"unknown partitioner {kind!r} (exact, embedding, classifier)")
