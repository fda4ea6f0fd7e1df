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
from pathlib import Path


from ..errors import InputError
from ..io import atomic_dir, read_json_file
from .index import PassageIndex
from .lexical import BM25Index

from .fusion import DEFAULT_DEPTH, FUSIONS, RRF_K, WEIGHT_GRID, check_weight, fuse, fuse_lists, tune_weight


KIND = "hybrid"


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


__all__ = ["DEFAULT_DEPTH", "FUSIONS", "KIND", "RRF_K", "WEIGHT_GRID", "HybridIndex", "check_weight", "fuse",
           "fuse_lists", "tune_weight"]
