"""A hybrid first stage: BM25 and a dense index fused, per question, into one ranking.

Two fusions, both over the top ``depth`` of each side:

* ``rrf``, reciprocal-rank fusion (Cormack et al. 2009): ``sum over sides of 1 / (rrf_k + rank)``,
  ranks from 1, ``rrf_k = 60``; a passage missing from one side adds nothing there.
* ``convex``: ``weight * lexical + (1 - weight) * dense`` of scores min-max normalised within each
  question's list on each side; a passage missing from one side scores 0 there (the minimum).
  ``weight`` is chosen on a dev split (:func:`tune_weight`), never on test.

:class:`HybridIndex` is the saved form, a :class:`~attnrag.retrieval.lexical.BM25Index` and a dense
:class:`~attnrag.retrieval.index.PassageIndex`; ``HybridIndex.searcher(encoder)`` is the one hybrid
searcher (:class:`~attnrag.retrieval.searcher.HybridSearcher`) with that query encoder on its dense
side, so where the dense retriever is trained the hybrid uses the trained one. Saved as a
directory: ``meta.json`` (kind ``hybrid``, fusion, weight, depth), ``lexical/`` and ``dense/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, read_json_file
from .index import PassageIndex
from .lexical import BM25Index

from .fusion import DEFAULT_DEPTH, WEIGHT_GRID


KIND = "hybrid"
FUSIONS = ("rrf", "convex")
RRF_K = 60


def _minmax(scores: np.ndarray) -> np.ndarray:
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
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion '{fusion}'; expected one of {', '.join(FUSIONS)}", field="fusion")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"the lexical weight must be in [0, 1], got {weight}", field="weight")
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


class HybridIndex:
    """BM25 + dense, fused per question (see the module docstring)."""

    kind = KIND

    def __init__(self, lexical: BM25Index, dense: PassageIndex, fusion: str = "convex", weight: float = 0.5,
                 depth: int = DEFAULT_DEPTH) -> None:
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion '{fusion}'; expected one of {', '.join(FUSIONS)}", field="fusion")
        check_weight(weight)
        if set(lexical.passage_ids) != set(dense.passage_ids):
            raise InputError("the BM25 and the dense index hold different passages; build both over one corpus")
        self.lexical, self.dense = lexical, dense
        self.fusion, self.weight, self.depth = fusion, float(weight), int(depth)
        self.passage_ids = dense.passage_ids
        self.passages = dense.passages or lexical.passages

    needs_encoder = True  # its dense side is searched with a query encoder

    @property
    def query_encoder_name(self) -> str | None:
        return self.dense.encoder_name

    def __len__(self) -> int:
        return len(self.dense)

    @property
    def dim(self) -> int:
        return self.dense.dim

    def with_dense(self, dense: PassageIndex) -> HybridIndex:
        """The same fusion over another dense index (a re-encoded one, after the passage tower moved)."""
        return HybridIndex(self.lexical, dense, self.fusion, self.weight, self.depth)

    def searcher(self, encoder, *, batch_size: int = 64, check: bool = True):
        """BM25 fused with the dense side searched by ``encoder``
        (:class:`~attnrag.retrieval.searcher.HybridSearcher`)."""
        from .searcher import HybridSearcher

        return HybridSearcher(self.lexical, self.dense.searcher(encoder, batch_size=batch_size, check=check),
                              self.fusion, self.weight, self.depth, check_passages=False)

    def save(self, directory: str | Path) -> Path:
        with atomic_dir(directory) as tmp:
            self.lexical.save(tmp / "lexical")
            self.dense.save(tmp / "dense")
            meta = {"format_version": 1, "kind": KIND, "fusion": self.fusion, "weight": self.weight,
                    "depth": self.depth, "rrf_k": RRF_K, "n": len(self)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> HybridIndex:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise InputError("not an attnrag hybrid index directory: meta.json is missing", path=directory)
        meta = read_json_file(meta_path, dict)
        if meta.get("kind") != KIND:
            raise InputError(f"meta.json says kind {meta.get('kind')!r}, not {KIND!r}", path=meta_path)
        for field, kind in (("fusion", str), ("weight", int | float), ("depth", int)):
            if not isinstance(meta.get(field), kind) or isinstance(meta.get(field), bool):
                raise InputError(f"meta.json field '{field}' is missing or not a {kind}", path=meta_path, field=field)
        return cls(BM25Index.load(directory / "lexical"), PassageIndex.load(directory / "dense"),
                   meta["fusion"], meta["weight"], meta["depth"])


def fuse_lists(lex_scores, lex_ids, dense_scores, dense_ids, k: int, fusion: str, weight: float
               ) -> tuple[np.ndarray, list[list[str]]]:
    """:func:`fuse` for every question: ``(scores [n, k], ids)``."""
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
