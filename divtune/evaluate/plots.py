"""PNG figures: the open-set, creative and novelty suites, and answer distributions of list selection (matplotlib, Agg).

Each function takes a result dict (as returned by the suite) and an output path, writes one PNG
and returns its path.  :func:`suite_figures` writes every figure a result supports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Lay out, write the PNG (parents created), close the figure."""
    plt = _plt()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _title_model(result: dict[str, Any]) -> str:
    gen = result.get("generator") or {}
    model = str(gen.get("model") or gen.get("endpoint") or "")
    return Path(model).name or model


def cumulative_unique_plot(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Paper Figure 5a,b: unique answers after k samples, one line per category."""
    plt = _plt()
    curves: dict[str, list[int]] = result["cumulative_unique"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cat, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, label=f"{cat} ({ys[-1] if ys else 0})")
    n = max((len(v) for v in curves.values()), default=1)
    ax.plot([1, n], [1, n], color="0.8", linestyle=":", linewidth=1, label="all distinct")
    ax.set_xlabel("samples")
    ax.set_ylabel("cumulative unique answers")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Open-set diversity: Unique@{n} mean {result['unique_at_n']:.1f}\n{_title_model(result)}",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return _save(fig, path)


def tsne_plot(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Paper Figure 6 style: t-SNE of the completions' embeddings, coloured by prompt."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    ts = result.get("tsne")
    if ts:
        cmap = plt.get_cmap("tab10")
        owners = ts["prompt"]
        for i, row in enumerate(result["per_prompt"]):
            idx = [k for k, o in enumerate(owners) if o == i]
            if not idx:
                continue
            d = row.get("pairwise_cosine_distance")
            label = f"{row['id']} ({'n/a' if d is None else f'{d:.2f}'})"
            ax.scatter([ts["x"][k] for k in idx], [ts["y"][k] for k in idx], s=12, alpha=0.75,
                       color=cmap(i % 10), label=label)
        ax.legend(fontsize=7, title="prompt (cosine dist.)", title_fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "fewer than two non-empty completions", ha="center", va="center", transform=ax.transAxes)
    _no_ticks(ax)
    ax.set_title(f"t-SNE of completion embeddings (T={result['sampling']['temperature']}, "
                 f"{result['samples']}/prompt)\n{_title_model(result)}", fontsize=10)
    return _save(fig, path)


def prompt_tsne_plot(result: dict[str, Any], path: str | os.PathLike, prompt_id: str = "haiku",
                     jitter: float = 0.01, seed: int = 0) -> Path:
    """Paper Figure 6 (bottom): one prompt's own t-SNE; identical texts share a colour.

    Texts that occur more than once (compared after collapsing whitespace) get one colour per
    text and a little noise (``jitter`` x the plot's span) so a cluster of identical texts is
    visible; texts that occur once are grey.
    """
    import numpy as np

    plt = _plt()
    row = next((r for r in result["per_prompt"] if r["id"] == prompt_id), None)
    if row is None:
        raise ValueError(f"no prompt {prompt_id!r} in the result")
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ts = row.get("tsne")
    if ts:
        texts = [" ".join(t.split()) for t in row["completions"] if t.strip()]
        x, y = np.asarray(ts["x"]), np.asarray(ts["y"])
        span = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9)
        rng = np.random.default_rng(seed)
        x = x + rng.normal(0, jitter * span, len(x))
        y = y + rng.normal(0, jitter * span, len(y))
        from collections import Counter

        counts = Counter(texts)
        repeated = [t for t, c in counts.most_common() if c > 1]
        once = [k for k, t in enumerate(texts) if counts[t] == 1]
        ax.scatter(x[once], y[once], s=14, color="0.6", alpha=0.8, label=f"unique ({len(once)})")
        cmap = plt.get_cmap("tab20")
        for j, t in enumerate(repeated):
            idx = [k for k, u in enumerate(texts) if u == t]
            ax.scatter(x[idx], y[idx], s=18, color=cmap(j % 20), alpha=0.9,
                       label=f"x{len(idx)}: {t[:40]}{'…' if len(t) > 40 else ''}" if j < 8 else None)
        ax.legend(fontsize=6, loc="best")
    else:
        ax.text(0.5, 0.5, "fewer than two non-empty completions", ha="center", va="center", transform=ax.transAxes)
    _no_ticks(ax)
    d = row.get("pairwise_cosine_distance")
    ax.set_title(f"\"{row['prompt']}\": {len(row['completions'])} samples, {row['distinct']} distinct, "
                 f"cosine dist. {'n/a' if d is None else f'{d:.2f}'}\n{_title_model(result)}", fontsize=9)
    return _save(fig, path)


_COHERENCE_LABEL = {
    "mean_token_logprob": "coherence: mean token log-likelihood (T=1 scoring)",
    "non_degenerate_rate": "coherence: non-degenerate sample rate",
    "coherence_fn": "coherence (benchmark)",
}


def creativity_coherence_plot(curve: dict[str, Any], path: str | os.PathLike, *, label: str = "model") -> Path:
    """Paper Figure 7 shape: coherence (x) vs creativity (y), one point per temperature."""
    plt = _plt()
    pts = [p for p in curve["points"] if p.get("coherence") is not None and p.get("pairwise_cosine_distance") is not None]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if pts:
        xs = [p["coherence"] for p in pts]
        ys = [p["pairwise_cosine_distance"] for p in pts]
        ax.plot(xs, ys, marker="o", label=label)
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(f"T={p['temperature']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no point has both metrics", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(_COHERENCE_LABEL.get(curve["coherence_metric"], curve["coherence_metric"]))
    ax.set_ylabel("creativity: mean pairwise cosine distance")
    ax.set_title(f"Creativity vs coherence across sampling temperatures\n{label}", fontsize=10)
    return _save(fig, path)


def novelty_plot(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """NoveltyBench's summary figure: the distribution over prompts of distinct_k and of utility_k."""
    plt = _plt()
    rows = result["per_prompt"]
    k = result["k"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    a.hist([r["distinct"] for r in rows], bins=[x + 0.5 for x in range(0, k + 1)], color="tab:blue", alpha=0.8)
    a.set_xlim(0.5, k + 0.5)
    a.set_xlabel(f"distinct_{k} (classes among {k} generations)")
    a.set_ylabel("prompts")
    a.set_title(f"distinct_{k}: mean {result['distinct_k']:.2f}", fontsize=10)
    b.hist([r["utility"] for r in rows], bins=20, color="tab:green", alpha=0.8)
    b.set_xlabel(f"utility_{k} (patience {result['patience']:g}, quality: {result['quality'].get('kind')})")
    b.set_ylabel("prompts")
    b.set_title(f"utility_{k}: mean {result['utility_k']:.3f}", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"NoveltyBench metrics, {result['num_prompts']} prompts, partitioner "
                 f"{result['partitioner'].get('kind')}  {_title_model(result)}", fontsize=10)
    return _save(fig, path)


def suite_figures(suite: str, result: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Every PNG the result supports, written under ``out_dir`` as ``<suite>_<figure>.png``."""
    d = Path(out_dir)
    if suite == "open-set":
        return [cumulative_unique_plot(result, d / "open-set_cumulative_unique.png")]
    if suite == "creative":
        out = [tsne_plot(result, d / "creative_tsne.png")]
        ids = [r["id"] for r in result["per_prompt"]]
        one = "haiku" if "haiku" in ids else ids[0]
        out.append(prompt_tsne_plot(result, d / f"creative_tsne_{one}.png", one))
        if result.get("coherence_curve"):
            model = _title_model(result) or "model"
            out.append(creativity_coherence_plot(result["coherence_curve"], d / "creative_coherence_curve.png",
                                                 label=model))
        return out
    if suite == "novelty":
        return [novelty_plot(result, d / "novelty_distinct_utility.png")]
    raise ValueError(f"no figures for suite {suite!r}")


def answer_distributions_chart(results: dict[str, dict[str, Any]], path: str | os.PathLike, lists: int = 3) -> Path:
    """Answer distribution per model for the first held-out lists (paper Figure 4 shape)."""
    import numpy as np

    plt = _plt()

    names = list(results)
    per_list = [results[n]["per_list"] for n in names]
    fig, axes = plt.subplots(1, lists, figsize=(5 * lists, 3.6), squeeze=False)
    for j in range(lists):
        ax = axes[0][j]
        items = per_list[0][j]["items"]
        x = np.arange(len(items) + 1)
        width = 0.8 / len(names)
        for i, n in enumerate(names):
            pl = per_list[i][j]
            counts = [pl["counts"][it] for it in items] + [pl["invalid"]]
            total = max(1, sum(counts))
            ax.bar(x + i * width, [c / total for c in counts], width, label=n)
        ax.axhline(1 / len(items), color="k", lw=0.8, ls="--")
        ax.set_xticks(x + 0.4 - width / 2, [*items, "invalid"], rotation=60, fontsize=7)
        ax.set_title(per_list[0][j]["category"])
    axes[0][0].set_ylabel("share of samples")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)

