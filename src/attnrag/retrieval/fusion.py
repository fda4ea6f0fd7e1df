"""Fusing BM25 and dense rankings, and the hybrid's tuning constants, declared once.

The constants are read by the command line, the API, the trainer, the paper grid and the scripts;
the functions by the hybrid index, the one hybrid searcher and the weight tuning. numpy is imported
inside the functions, so importing the constants stays light (no numpy, FAISS or torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..options import option

#: the lexical weights a dev split chooses among (BM25's share of the convex fusion)
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
#: passages taken from each side before fusing
DEFAULT_DEPTH = 100
FUSIONS = ("rrf", "convex")
RRF_K = 60


@dataclass(frozen=True)
class FusionConfig:
    """How BM25 and a dense ranking are fused into one: the options of every hybrid, declared once
    (``TrainConfig.hybrid``: ``--hybrid-weight``; ``IndexConfig.hybrid``: ``--weight``). A weight left
    null is chosen on a dev split over :data:`WEIGHT_GRID` (:func:`attnrag.evaluate.retrieval.tune_hybrid_weight`)."""

    fusion: str = option("convex", help="convex (min-max normalised scores, weighted) or rrf (reciprocal ranks)")
    weight: float | None = option(None, help=(
        "BM25's weight in the convex fusion, in [0, 1] (null: chosen on the dev split)"))
    depth: int = option(DEFAULT_DEPTH, help="passages taken from each side before fusing")

    @classmethod
    def read(cls, record: dict, path) -> FusionConfig:
        """The fusion a saved hybrid's JSON records (``fusion``, ``weight``, ``depth``), checked; a bad
        value names the file and the field."""
        try:
            fusion = cls(record.get("fusion", "convex"), record.get("weight"), record.get("depth"))
            if not isinstance(fusion.fusion, str) or fusion.weight is None:
                raise InputError("a saved hybrid records its fusion and weight", field="weight")
            return fusion.validate()
        except InputError as exc:
            raise InputError(exc.reason, path=path, field=exc.field) from exc

    def validate(self) -> FusionConfig:
        if self.fusion not in FUSIONS:
            raise InputError(f"unknown fusion '{self.fusion}'; expected one of {', '.join(FUSIONS)}", field="fusion")
        if self.weight is not None:
            check_weight(self.weight)
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise InputError(f"expected an integer >= 1, got {self.depth!r}", field="depth")
        return self


def _minmax(scores):
    import numpy as np

    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros_like(scores, dtype=np.float64)
    lo, hi = scores[finite].min(), scores[finite].max()
    out = np.where(finite, (scores - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
    return out.astype(np.float64)


def fuse(lexical: tuple[Sequence[float], Sequence[str]], dense: tuple[Sequence[float], Sequence[str]], k: int,
         fusion: str = "convex", weight: float = 0.5, rrf_k: int = RRF_K) -> tuple[list[float], list[str]]:
    """One question's fused top-``k``: ``(scores, ids)``, best first (ties: lexical order, then dense).

    ``lexical`` and ``dense`` are each side's ``(scores, ids)`` in rank order.
    """
    import numpy as np

    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion '{fusion}'; expected one of {', '.join(FUSIONS)}", field="fusion")
    check_weight(weight)
    fused: dict[str, float] = {}
    order: dict[str, int] = {}
    sides = ((lexical, weight), (dense, 1.0 - weight))
    for side, (scores, ids) in enumerate(s for s, _ in sides):
        norm = _minmax(np.asarray(scores, dtype=np.float64)) if fusion == "convex" else None
        for rank, pid in enumerate(ids):
            order.setdefault(pid, side * 10**9 + rank)
            part = 1.0 / (rrf_k + rank + 1) if fusion == "rrf" else sides[side][1] * float(norm[rank])
            fused[pid] = fused.get(pid, 0.0) + part
    best = sorted(fused, key=lambda pid: (-fused[pid], order[pid]))[:k]
    return [fused[pid] for pid in best], best


def check_weight(weight) -> float:
    """The lexical weight of a convex fusion: a number in [0, 1] (the one check every caller uses)."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= float(weight) <= 1.0:
        raise InputError(f"the lexical weight must be a number in [0, 1], got {weight!r}", field="weight")
    return float(weight)


def fuse_lists(lex_scores, lex_ids, dense_scores, dense_ids, k: int, fusion: str, weight: float):
    """:func:`fuse` for every question: ``(scores [n, k] float32 array, ids)``."""
    import numpy as np

    out_scores = np.zeros((len(lex_ids), k), dtype=np.float32)
    out_ids = []
    for i in range(len(lex_ids)):
        dense_row = np.asarray(dense_scores[i])[: len(dense_ids[i])]
        scores, ids = fuse((lex_scores[i], lex_ids[i]), (dense_row, dense_ids[i]), k, fusion, weight)
        out_scores[i, : len(scores)] = scores
        out_ids.append(ids)
    return out_scores, out_ids


def tune_weight(evaluate: Callable[[float], float], grid: Sequence[float] = WEIGHT_GRID
                ) -> tuple[float, dict[float, float]]:
    """The lexical weight that maximises ``evaluate(weight)`` (a dev-split metric) over ``grid``.

    Ties go to the weight closest to 0.5 (the untuned default), so a flat metric does not move it.
    Returns ``(best, {weight: metric})``.
    """
    table = {float(w): float(evaluate(float(w))) for w in grid}
    best = max(table, key=lambda w: (table[w], -abs(w - 0.5)))
    return best, table


__all__ = ["DEFAULT_DEPTH", "FUSIONS", "RRF_K", "WEIGHT_GRID", "FusionConfig", "check_weight", "fuse", "fuse_lists",
           "tune_weight"]
