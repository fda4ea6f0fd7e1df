"""The paired bootstrap against hand-checkable cases and a normal-approximation reference."""

from __future__ import annotations

import numpy as np
import pytest

from attnrag.data.records import QAExample
from attnrag.evaluate.bootstrap import gold_hits_at_k, paired_bootstrap


def test_identical_systems_give_a_zero_width_interval_at_zero():
    a = np.array([1, 0, 1, 1, 0], dtype=float)
    out = paired_bootstrap(a, a.copy())
    assert (out["delta"], out["low"], out["high"], out["excludes_zero"]) == (0.0, 0.0, 0.0, False)


def test_interval_matches_the_normal_approximation_on_many_questions():
    rng = np.random.default_rng(1)
    a = (rng.random(2000) < 0.60).astype(float)
    b = np.where(rng.random(2000) < 0.85, a, 1 - a)  # correlated, as two retrievers on one test set are
    out = paired_bootstrap(a, b, n_resamples=4000)
    d = a - b
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert out["delta"] == pytest.approx(d.mean())
    assert out["low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.006)
    assert out["high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.006)


def test_a_clear_gain_excludes_zero_and_a_tiny_one_does_not():
    better = np.ones(300)
    worse = np.r_[np.zeros(60), np.ones(240)]
    assert paired_bootstrap(better, worse)["excludes_zero"]
    barely = np.r_[np.zeros(1), np.ones(299)]
    assert not paired_bootstrap(barely, np.r_[np.ones(1), np.zeros(1), np.ones(298)])["excludes_zero"]


def test_gold_hits_at_k():
    examples = [QAExample("q1", "?", ["a"], ["p1"]), QAExample("q2", "?", ["a"], ["p9", "p3"])]
    retrieved = [["p2", "p1"], ["p3", "p4"]]
    assert gold_hits_at_k(retrieved, examples, 1).tolist() == [0.0, 1.0]
    assert gold_hits_at_k(retrieved, examples, 2).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        gold_hits_at_k(retrieved[:1], examples)


def test_recovered_share_by_hand_and_undefined_without_a_supervised_gain():
    from attnrag.evaluate.bootstrap import recovered_share

    n = 400
    base = np.zeros(n)
    supervised = (np.arange(n) < 200).astype(float)  # +0.50
    distilled = (np.arange(n) < 100).astype(float)  # +0.25: half of it
    out = recovered_share(distilled, supervised, base, n_resamples=4000)
    assert out["defined"] and out["share"] == pytest.approx(0.5)
    assert out["low"] < 0.5 < out["high"] and out["high"] - out["low"] < 0.25
    # a supervised gain within noise: no ratio, a reason
    flat = base.copy()
    flat[:3] = 1.0
    flat_base = base.copy()
    flat_base[3:5] = 1.0
    none = recovered_share(distilled, flat, flat_base, n_resamples=2000)
    assert not none["defined"] and none["share"] is None and "zero" in none["reason"]
