"""Is a difference between two retrievers a finding or noise? A paired bootstrap over test questions.

Both systems answer the same questions, so the per-question differences ``d_i = hit_a(i) - hit_b(i)``
carry the comparison; resampling questions with replacement and recomputing ``mean(d)`` gives the
evaluation uncertainty of the difference (scipy's bootstrap, percentile interval). It says nothing
about training variance (another seed can move a distilled retriever more than this interval): the
docs call a difference a finding only when it survives both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.records import QAExample


def gold_hits_at_k(retrieved: Sequence[Sequence[str]], examples: Sequence[QAExample], k: int = 1) -> np.ndarray:
    """``1.0`` where one of the top-``k`` retrieved ids is a gold passage of the question (questions with
    gold ids only; the caller passes them aligned)."""
    if len(retrieved) != len(examples):
        raise ValueError(f"{len(retrieved)} retrieval rows for {len(examples)} questions")
    return np.array([float(bool(set(row[:k]) & set(e.gold_passage_ids))) for row, e in zip(retrieved, examples)])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 10_000,
                     seed: int = 0) -> dict:
    """Mean of ``a - b`` over paired questions and its bootstrap interval.

    Returns ``delta``, ``low``, ``high`` (the ``confidence`` percentile interval), ``n`` and
    ``excludes_zero``. Identical inputs give a zero-width interval at 0.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two aligned 1-D arrays of at least 2 questions, got {a.shape} and {b.shape}")
    d = a - b
    delta = float(d.mean())
    if np.all(d == d[0]):  # no variation: the interval is the point (scipy warns on a degenerate sample)
        low = high = delta
    else:
        res = bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                        method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"delta": delta, "low": low, "high": high, "n": int(len(d)), "confidence": confidence,
            "excludes_zero": bool(low > 0 or high < 0)}
