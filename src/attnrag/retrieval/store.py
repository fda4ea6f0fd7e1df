"""The one place that knows both index kinds: load, save and refresh a single or a sharded index.

:mod:`~attnrag.retrieval.index` holds one FAISS index (:class:`PassageIndex`), and
:mod:`~attnrag.retrieval.sharded` splits one across processes (:class:`ShardedIndex`); everything that
must work with either (the trainer, evaluation, the API) comes here, so neither module imports the other
back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.records import Passage
from ..errors import InputError
from ..parallel import Dist, shard_range, single_process
from .encoder import BiEncoder
from .hybrid import HybridIndex, read_hybrid_meta
from .index import PassageIndex, build_index, encoder_record
from .lexical import BM25Index
from .sharded import ShardedIndex, is_sharded_dir


def load_indexed_corpus(directory: str | Path, dist: Dist | None = None,
                        corpus: Sequence[Passage] | None = None
                        ) -> tuple[PassageIndex | ShardedIndex, dict[str, Passage]]:
    """Load an index directory saved with its passages, single or sharded: ``(index, passages_by_id)``.

    The one loader every stage uses. A sharded directory (written by a multi-process run) loaded by
    one process holds every shard and searches like a :class:`PassageIndex`.
    A sharded index loaded by several ranks holds only its shards' passages, so the passages of the
    whole corpus come from ``corpus`` (the trainer's corpus, which every rank loads anyway).
    """
    kind = _dir_kind(directory)
    if kind in ("bm25", "hybrid"):
        index = BM25Index.load(directory) if kind == "bm25" else HybridIndex.load(directory)
        if index.passages is None:
            raise InputError("index directory has no passages.jsonl; build it with attnrag index build",
                             path=directory)
        return index, index.passages
    if not is_sharded_dir(directory):
        index = PassageIndex.load(directory)
        if index.passages is None:
            raise InputError("index directory has no passages.jsonl; build it with build_index()", path=directory)
        return index, index.passages
    index = ShardedIndex.load(directory, dist)
    local = index.passages
    if index.holds_everything and local is not None:
        return index, local
    if corpus is None:
        raise InputError("a sharded index loaded by several processes needs the corpus passages",
                         path=directory)
    by_id = {p.id: p for p in corpus}
    if len(by_id) != len(index):
        raise InputError(f"the sharded index holds {len(index)} passages but the corpus {len(by_id)}",
                         path=directory)
    missing = [pid for pid in index.passage_ids if pid not in by_id]
    if missing:
        raise InputError(f"passage '{missing[0]}' of the index is not in the corpus", path=directory)
    return index, by_id


def _dir_kind(directory: str | Path) -> str | None:
    """The ``kind`` a single (not sharded) index directory's meta.json records, if it is readable."""
    from ..io import read_json_file

    meta = Path(directory) / "meta.json"
    if not meta.is_file():
        return None
    kind = read_json_file(meta, dict).get("kind")
    return kind if isinstance(kind, str) else None


def save_any_index(index: PassageIndex | ShardedIndex, directory: str | Path,
                   dist: Dist | None = None) -> Path:
    """Save either kind from a data-parallel job: a sharded index collectively, a replicated one by
    rank 0 (every rank waits). Collective."""
    dist = dist or single_process()
    if isinstance(index, ShardedIndex):
        return index.save(directory)
    dist.on_main(index.save, directory)
    return Path(directory)


def refresh_any_index(index: PassageIndex | ShardedIndex, passages: dict[str, Passage], encoder: BiEncoder,
                      dist: Dist | None = None, *, batch_size: int = 64, progress: bool = True
                      ) -> PassageIndex | ShardedIndex:
    """Re-encode the corpus with the current passage tower (ATLAS refresh), sharing the work between ranks.

    A sharded index refreshes its shards in place. A replicated :class:`PassageIndex` is rebuilt on
    every rank from embeddings each rank computed for its block of the corpus and all-gathered, so the
    encoding still takes 1/W of the time (the index build itself is repeated on every rank).
    Collective.
    """
    dist = dist or single_process()
    if isinstance(index, HybridIndex):  # BM25 does not move; its dense side is re-encoded
        return index.with_dense(refresh_any_index(index.dense, passages, encoder, dist, batch_size=batch_size,
                                                  progress=progress))
    if isinstance(index, BM25Index):
        return index
    if isinstance(index, ShardedIndex):
        return index.refresh(encoder, batch_size=batch_size, progress=progress)
    ordered = [passages[pid] for pid in index.passage_ids] if index.passage_ids else list(passages.values())
    if not dist.enabled:
        return build_index(ordered, encoder, kind=index.kind, batch_size=batch_size, progress=progress,
                           **(index.params or {}))
    start, end = shard_range(len(ordered), dist.world_size, dist.rank)
    mine = ordered[start:end]
    emb = (encoder.encode_passages(mine, batch_size=batch_size, progress=progress) if mine
           else np.zeros((0, encoder.dim), dtype=np.float32))
    full = dist.all_gather(torch.from_numpy(emb)).numpy()
    return PassageIndex.build(full, [p.id for p in ordered], index.kind, encoder_name=encoder.name,
                              passages={p.id: p for p in ordered}, encoder_info=encoder_record(encoder),
                              **(index.params or {}))




def load_searcher(directory: str | Path, encoder: BiEncoder | str | None = None, *, batch_size: int = 64,
                  check: bool = True):
    """``(searcher, passages_by_id)`` of a saved index directory (dense, sharded, BM25 or hybrid).

    ``encoder``: a :class:`BiEncoder` or a model name / directory for the dense side; ``None`` takes
    the one the index records (a BM25 index needs none and refuses one).
    """
    from .encoder import BiEncoder

    if _dir_kind(directory) == "hybrid" and read_hybrid_meta(directory)["dense"]["format"] == "sentence-transformers":
        from .export import load_exported_hybrid  # an export: the model itself is the dense side

        if encoder is not None:
            raise InputError("an exported hybrid searches with its own model; give no encoder", field="encoder")
        searcher = load_exported_hybrid(directory)
        return searcher, searcher.lexical.passages
    index, passages = load_indexed_corpus(directory)
    if not index.needs_encoder:
        if encoder is not None:
            raise InputError("a bm25 index searches with no encoder", field="encoder")
        return index.searcher(), passages
    if not isinstance(encoder, BiEncoder):
        from ..models import DEFAULT_RETRIEVER

        encoder = BiEncoder.from_pretrained(encoder or index.query_encoder_name or DEFAULT_RETRIEVER)
    return index.searcher(encoder, batch_size=batch_size, check=check), passages


__all__ = ["load_indexed_corpus", "load_searcher", "refresh_any_index", "save_any_index"]
