"""The options of ``attnrag index build``, documented once (torch-free: the
command line generates its flags from these fields without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..options import option
from .fusion import FusionConfig

INDEX_KINDS = ("flat", "ivf", "hnsw", "bm25", "hybrid")


@dataclass(frozen=True)
class IndexConfig:
    """How ``index build`` indexes a corpus: a FAISS index of the passage tower, BM25, or both fused."""

    kind: str = option("flat", help="flat, ivf, hnsw (dense), bm25 (lexical) or hybrid (both)")
    batch_size: int = option(64, help="encoding batch size (dense kinds)")
    similarity: str | None = option(None, help=(
        "cosine or dot (dense kinds; null: what the encoder's model directory declares)"))
    hybrid: FusionConfig = option(default_factory=FusionConfig, flatten=True, help=(
        "hybrid: the fusion (--fusion, --weight: null is 0.5, or chosen with --tune-on; --depth)"))
    k1: float | None = option(None, help="bm25 / hybrid: BM25 k1 (null: 1.5)")
    b: float | None = option(None, help="bm25 / hybrid: BM25 b (null: 0.75)")

    def validate(self) -> IndexConfig:
        if self.kind not in INDEX_KINDS:
            raise InputError(f"unknown index kind {self.kind!r}; expected one of {', '.join(INDEX_KINDS)}",
                             field="kind")
        self.hybrid.validate()
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"expected an integer >= 1, got {self.batch_size!r}", field="batch_size")
        return self

    def build_options(self) -> dict:
        """The keyword arguments of :func:`attnrag.api.build_index`."""
        return {"kind": self.kind, "batch_size": self.batch_size, "similarity": self.similarity,
                "fusion": self.hybrid.fusion, "weight": self.hybrid.weight, "depth": self.hybrid.depth,
                "k1": self.k1, "b": self.b}


__all__ = ["INDEX_KINDS", "IndexConfig"]
