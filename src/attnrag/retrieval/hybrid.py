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
side, so where the dense retriever is trained the hybrid uses the trained one.

One on-disk format, two kinds of dense side: a directory with ``meta.json`` (kind ``hybrid``,
fusion, weight, depth, ``lexical``: the BM25 index's folder, ``dense``: ``{"format", "path"}``),
the BM25 index (``lexical/``) and the dense side, either an attnrag FAISS index (``faiss``,
``dense/``: what ``index build --kind hybrid`` writes) or a sentence-transformers model
(``sentence-transformers``, path ``.``: what ``export --bm25`` writes, a model directory that
sentence-transformers loads as it is and whose model card queries the hybrid with bm25s and
sentence-transformers alone). :func:`read_hybrid_meta` reads and checks either; a meta.json written
before the dense side was recorded (format_version 1) has a FAISS index at ``dense/``.
"""

from __future__ import annotations

import json
from pathlib import Path


from ..errors import InputError
from ..io import atomic_dir, read_json_file, verify_checksums, write_checksums
from .index import PassageIndex
from .lexical import BM25Index

from .fusion import (DEFAULT_DEPTH, FUSIONS, RRF_K, WEIGHT_GRID, FusionConfig, check_weight, fuse, fuse_lists,
                     tune_weight)


KIND = "hybrid"
FORMAT_VERSION = 2
#: what a hybrid's dense side can be: an attnrag FAISS index or a sentence-transformers model
DENSE_FORMATS = ("faiss", "sentence-transformers")


def write_hybrid_meta(directory: Path, fusion: str, weight: float, depth: int, n: int, dense_format: str = "faiss",
                      dense_path: str = "dense", extra: dict | None = None) -> None:
    """The ``meta.json`` of a hybrid directory (the one writer: ``HybridIndex.save`` and the export)."""
    if dense_format not in DENSE_FORMATS:
        raise ValueError(f"dense format must be one of {DENSE_FORMATS}, got {dense_format!r}")
    meta = {"format_version": FORMAT_VERSION, "kind": KIND, "fusion": fusion, "weight": float(check_weight(weight)),
            "depth": int(depth), "rrf_k": RRF_K, "n": int(n), "lexical": "lexical",
            "dense": {"format": dense_format, "path": dense_path},
            "normalisation": "convex: min-max within each question's top-depth list per side; a passage missing "
                             "from one side scores 0 there", **(extra or {})}
    (Path(directory) / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_hybrid_meta(directory: str | Path) -> dict:
    """A hybrid directory's checked ``meta.json``, with ``dense`` filled in for format version 1."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise InputError("not an attnrag hybrid index directory: meta.json is missing", path=directory)
    verify_checksums(directory, "rebuild the index (attnrag index build --kind hybrid)")
    meta = read_json_file(meta_path, dict)
    if meta.get("kind") != KIND:
        raise InputError(f"meta.json says kind {meta.get('kind')!r}, not {KIND!r}", path=meta_path)
    if not isinstance(meta.get("fusion"), str):
        raise InputError("meta.json field 'fusion' is missing or not a string", path=meta_path, field="fusion")
    FusionConfig.read(meta, meta_path)  # fusion, weight and depth checked as every hybrid's options are
    dense = meta.setdefault("dense", {"format": "faiss", "path": "dense"})
    lexical = meta.setdefault("lexical", "lexical")
    if (not isinstance(dense, dict) or dense.get("format") not in DENSE_FORMATS
            or not isinstance(dense.get("path"), str)):
        raise InputError(f"meta.json field 'dense' must be {{\"format\": one of {', '.join(DENSE_FORMATS)}, "
                         "\"path\": a folder}", path=meta_path, field="dense")
    for field, path in (("lexical", lexical), ("dense", dense["path"])):  # stays inside the directory
        if not isinstance(path, str) or Path(path).is_absolute() or ".." in Path(path).parts:
            raise InputError(f"meta.json field '{field}' must be a folder inside the directory", path=meta_path,
                             field=field)
    return meta


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
            write_hybrid_meta(tmp, self.fusion, self.weight, self.depth, len(self))
            write_checksums(tmp)  # its meta.json; lexical/ and dense/ record their own
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> HybridIndex:
        """A hybrid whose dense side is an attnrag FAISS index (an exported one, whose dense side is a
        sentence-transformers model, is loaded by :func:`attnrag.retrieval.store.load_searcher`)."""
        directory = Path(directory)
        meta = read_hybrid_meta(directory)
        if meta["dense"]["format"] != "faiss":
            raise InputError("this hybrid's dense side is a sentence-transformers model (an export): load it with "
                             "attnrag.retrieval.store.load_searcher, or as its model card shows", path=directory)
        return cls(BM25Index.load(directory / meta["lexical"]), PassageIndex.load(directory / meta["dense"]["path"]),
                   meta["fusion"], meta["weight"], meta["depth"])


__all__ = ["DEFAULT_DEPTH", "DENSE_FORMATS", "FUSIONS", "KIND", "RRF_K", "WEIGHT_GRID", "HybridIndex", "check_weight",
           "fuse", "fuse_lists", "read_hybrid_meta", "tune_weight", "write_hybrid_meta"]
