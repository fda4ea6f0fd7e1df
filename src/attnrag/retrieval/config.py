"""The options of ``attnrag index build``, documented once (torch-free: the
command line generates its flags from these fields without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..options import option
from .fusion import DEFAULT_DEPTH, FUSIONS, check_weight

INDEX_KINDS = ("flat", "ivf", "hnsw", "bm25", "hybrid")


@dataclass(frozen=True)
class IndexConfig:
    """How ``index build`` indexes a corpus: a FAISS index of the passage tower, BM25, or both fused."""

    kind: str = option("flat", help="flat, ivf, hnsw (dense), bm25 (lexical) or hybrid (both)")
    batch_size: int = option(64, help="encoding batch size (dense kinds)")
    similarity: str | None = option(None, help=(
        "cosine or dot (dense kinds; null: what the encoder's model directory declares)"))
    fusion: str = option("convex", help="hybrid: convex (min-max normalised scores) or rrf")
    weight: float | None = option(None, help=(
        "hybrid: the lexical side's weight in [0, 1] (convex; null: 0.5, or chosen with --tune-on)"))
    depth: int = option(DEFAULT_DEPTH, help="hybrid: passages taken from each side before fusing")
    k1: float | None = option(None, help="bm25 / hybrid: BM25 k1 (null: 1.5)")
    b: float | None = option(None, help="bm25 / hybrid: BM25 b (null: 0.75)")

    def validate(self) -> IndexConfig:
        if self.kind not in INDEX_KINDS:
            raise InputError(f"unknown index kind {self.kind!r}; expected one of {', '.join(INDEX_KINDS)}",
                             field="kind")
        if self.fusion not in FUSIONS:
            raise InputError(f"unknown fusion {self.fusion!r}; expected one of {', '.join(FUSIONS)}", field="fusion")
        if self.weight is not None:
            check_weight(self.weight)
        for name in ("batch_size", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected an integer >= 1, got {value!r}", field=name)
        return self


__all__ = ["INDEX_KINDS", "IndexConfig"]
