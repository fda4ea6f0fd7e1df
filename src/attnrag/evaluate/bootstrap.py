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


def recovered_share(distilled: np.ndarray, supervised: np.ndarray, base: np.ndarray, *, confidence: float = 0.95,
                    n_resamples: int = 10_000, seed: int = 0) -> dict:
    """The share of the supervised bound's gain that distillation recovers, ``gain(distilled) /
    gain(supervised)`` over the same questions, with a paired bootstrap interval (questions resampled
    together for all three systems).

    A ratio is only meaningful when its denominator is clearly positive: ``defined`` is true only when
    the supervised gain's own interval excludes zero from above; otherwise ``share`` is ``None`` and
    ``reason`` says why, instead of a ratio of two noise terms.
    """
    distilled, supervised, base = (np.asarray(x, dtype=np.float64) for x in (distilled, supervised, base))
    if not distilled.shape == supervised.shape == base.shape or distilled.ndim != 1:
        raise ValueError("need three aligned 1-D arrays of per-question hits")
    sup = paired_bootstrap(supervised, base, confidence=confidence, n_resamples=n_resamples, seed=seed)
    out = {"distilled_gain": float((distilled - base).mean()), "supervised_gain": sup["delta"],
           "supervised_interval": [sup["low"], sup["high"]], "n": int(len(base)), "confidence": confidence}
    if not sup["low"] > 0:
        return {**out, "defined": False, "share": None, "low": None, "high": None,
                "reason": "the supervised gain's interval does not exclude zero from above"}
    rng = np.random.default_rng(seed)
    d_gain, s_gain = distilled - base, supervised - base
    idx = rng.integers(0, len(base), size=(n_resamples, len(base)))
    num, den = d_gain[idx].mean(1), s_gain[idx].mean(1)
    ratios = num[den > 0] / den[den > 0]
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return {**out, "defined": True, "share": out["distilled_gain"] / out["supervised_gain"],
            "low": float(low), "high": float(high)}
