"""One searcher interface for dense, BM25 and hybrid retrieval, in pyserini's shape.

A searcher answers ``search(questions, k) -> (scores [n, k], ids)``; whatever it needs to embed a
question is fixed when it is built, so every caller searches the same way whatever the first stage:

* :class:`DenseSearcher`: a dense index (flat / IVF / HNSW, or sharded) and the query encoder;
* :class:`~attnrag.retrieval.lexical.BM25Index`: BM25 is its own searcher (no encoder);
  :class:`HybridSearcher` takes it as its lexical side;
* :class:`HybridSearcher`: BM25 and any dense searcher, fused per question (convex or RRF).

An index saved on disk becomes a searcher through its ``searcher(encoder)`` method (a lexical index
takes none), and :func:`attnrag.retrieval.store.load_searcher` does both steps for a directory. This
module imports no other part of ``attnrag.retrieval`` (the indexes import it). The trainer builds its
searcher once per run, again only after a tied tower re-encodes the corpus (the encoder object it
holds is the one being trained, so the searcher always uses the current weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .encoder import BiEncoder


class Searcher(Protocol):
    """What every first stage answers."""

    passage_ids: list[str]

    def search(self, questions: Sequence[str], k: int) -> tuple[np.ndarray, list[list[str]]]: ...


class DenseSearcher:
    """A dense index searched with the query encoder it was built with.

    ``check`` refuses an encoder other than the one that built the index (``check_encoder``); the
    trainer turns it off for its own index, which it re-encodes whenever its passage tower moves.
    """

    def __init__(self, index, encoder: BiEncoder, *, batch_size: int = 64, check: bool = True) -> None:
        if check:
            index.check_encoder(encoder)
        self.index, self.encoder, self.batch_size = index, encoder, int(batch_size)

    @property
    def passage_ids(self) -> list[str]:
        return self.index.passage_ids

    @property
    def passages(self):
        return self.index.passages

    def __len__(self) -> int:
        return len(self.index)

    def search(self, questions: Sequence[str], k: int) -> tuple[np.ndarray, list[list[str]]]:
        return self.index.search(self.encoder.encode_queries(list(questions), batch_size=self.batch_size), k)


class HybridSearcher:
    """BM25 and a dense searcher fused per question over the top ``depth`` of each side
    (:func:`~attnrag.retrieval.fusion.fuse_lists`; the module docstring of
    :mod:`attnrag.retrieval.hybrid` defines both fusions)."""

    def __init__(self, lexical: Searcher, dense: Searcher, fusion: str = "convex", weight: float = 0.5,
                 depth: int | None = None, check_passages: bool = True) -> None:
        from .fusion import DEFAULT_DEPTH, FUSIONS, check_weight

        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion '{fusion}'; expected one of {', '.join(FUSIONS)}", field="fusion")
        check_weight(weight)
        if check_passages and set(lexical.passage_ids) != set(dense.passage_ids):
            raise InputError("the BM25 and the dense index hold different passages; build both over one corpus")
        self.lexical, self.dense = lexical, dense
        self.fusion, self.weight = fusion, float(weight)
        self.depth = DEFAULT_DEPTH if depth is None else int(depth)

    @property
    def passage_ids(self) -> list[str]:
        return self.dense.passage_ids

    def __len__(self) -> int:
        return len(self.passage_ids)

    def search(self, questions: Sequence[str], k: int) -> tuple[np.ndarray, list[list[str]]]:
        from .fusion import fuse_lists

        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(self):
            raise InputError(f"k must be an integer between 1 and the number of indexed passages ({len(self)}), got {k}")
        depth = min(len(self), max(int(k), self.depth))
        questions = list(questions)
        lex_scores, lex_ids = self.lexical.search(questions, depth)
        dense_scores, dense_ids = self.dense.search(questions, depth)
        return fuse_lists(lex_scores, lex_ids, dense_scores, dense_ids, int(k), self.fusion, self.weight)


__all__ = ["DenseSearcher", "HybridSearcher", "Searcher"]
