"""Offline pieces for lm-eval's HumanEval task.

lm-eval's stock ``humaneval/utils.py`` runs ``evaluate.load("code_eval")`` at import time, which fetches the
metric's code from the Hugging Face hub: it cannot load offline. These are its two functions with the same
signatures and results; ``pass_at_k`` executes each candidate program (prompt + completion + the task's test +
``check(entry_point)``, exactly what code_eval runs) in :func:`divtune.evaluate.sandbox.run_python` and applies
code_eval's unbiased pass@k estimator.
"""

from __future__ import annotations

import numpy as np

from divtune.answers.metrics import pass_at_k as estimate_pass_at_k
from divtune.evaluate.sandbox import DEFAULT_TIMEOUT, run_python


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> dict[str, float]:
    """code_eval's ``compute(references, predictions, k)[0]``: mean pass@k over the given problems."""
    assert k is not None
    ks = [k] if isinstance(k, int) else list(k)
    totals: list[tuple[int, int]] = []
    for test, candidates in zip(references, predictions, strict=True):
        correct = sum(run_python(cand + "\n" + test + "\n", timeout=float(timeout)).passed for cand in candidates)
        totals.append((len(candidates), correct))
    return {f"pass@{kk}": float(np.mean([estimate_pass_at_k(n, c, kk) for n, c in totals]))
            for kk in ks if all(n >= kk for n, _ in totals)}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """The stock filter: each completion appended to its prompt."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
