"""A passage index split across the ranks of a data-parallel job (ATLAS-style sharding).

Shard ``i`` of ``S`` holds the contiguous block :func:`~attnrag.parallel.shard_range` of the
corpus, so the global passage order is shard 0's passages, then shard 1's, and so on. Each rank
encodes and holds its own shard(s); with ``W`` ranks and ``S = W`` shards, encoding the corpus (and
every refresh) takes 1/W of the single-process time and each rank's memory holds 1/W of the vectors.

:meth:`ShardedIndex.search` has :meth:`PassageIndex.search`'s contract, ``(scores [n, k], ids)``, and
is *collective*: every rank calls it (each with its own queries, possibly none). It all-gathers the
query embeddings, searches every local shard for all of them, all-gathers the per-shard top-k and
merges them into the global top-k of each rank's own queries. Ties are broken by global passage
order (the earlier passage first), so the result does not depend on the number of shards. For a
flat index it equals a single flat index over the whole corpus: same ids, scores to float rounding.

On disk a sharded index is a directory::

    shards.json          manifest: kind, dim, total, per-shard offset and size
    shard-00000/         a PassageIndex directory (index.faiss, ids.json, meta.json, passages.jsonl)
    shard-00001/ ...

written through :func:`attnrag.io.atomic_dir` twice over: rank 0 opens the directory's temporary
copy, every rank writes its shards into it (each shard itself atomically), and rank 0 renames it into
place only after every rank reported success. A killed save leaves the previous index. The
directory must be on a file system every rank sees. It loads with any number of ranks (each loads a
contiguous run of shards), including one process, which then holds every shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.records import Passage
from ..errors import InputError
from ..io import atomic_dir, read_json_file, write_json
from ..parallel import Dist, shard_range, single_process
from .index import PassageIndex, _as_matrix, build_index, check_encoder, encoder_record

if TYPE_CHECKING:
    from .encoder import BiEncoder

MANIFEST = "shards.json"
FORMAT_VERSION = 1


def shard_dir_name(i: int) -> str:
    return f"shard-{i:05d}"


def is_sharded_dir(directory: str | Path) -> bool:
    return (Path(directory) / MANIFEST).is_file()


class ShardedIndex:
    """The shards one rank holds, plus what it needs to take part in a global search."""

    def __init__(self, shards: dict[int, PassageIndex | None], offsets: Sequence[int], dist: Dist | None,
                 kind: str, dim: int, params: dict | None = None, encoder_name: str | None = None,
                 encoder_info: dict | None = None) -> None:
        self.dist = dist or single_process()
        self.shards = dict(sorted(shards.items()))  # shard number -> its index (None: an empty shard)
        self.offsets = [int(o) for o in offsets]  # len S + 1; shard i holds rows offsets[i]:offsets[i+1]
        self.kind = kind
        self._dim = int(dim)
        self.params = dict(params or {})  # as requested at build time (an ivf nlist may differ per shard)
        self.encoder_name = encoder_name
        self.encoder_info = dict(encoder_info) if encoder_info else None

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, embeddings, passage_ids: Sequence[str], dist: Dist | None = None, kind: str = "flat", *,
              encoder_name: str | None = None, passages: dict[str, Passage] | None = None,
              encoder_info: dict | None = None, **params) -> ShardedIndex:
        """Collective: each rank passes *its own* shard (rank 0 the first block of the corpus, ...).

        Passage ids are checked for duplicates within a shard (``PassageIndex.build``); checking across
        shards would mean gathering every id on every rank, which sharding exists to avoid.
        """
        dist = dist or single_process()
        x = _as_matrix(embeddings, "embeddings", allow_empty=True)
        ids = [str(i) for i in passage_ids]
        if len(ids) != x.shape[0]:
            raise InputError(f"{x.shape[0]} embeddings but {len(ids)} passage ids; they must match one to "
                             "one")
        shapes = dist.all_gather_object((len(ids), x.shape[1] if len(ids) else None))
        dims = {d for _, d in shapes if d is not None}
        if len(dims) != 1:
            raise InputError(f"shards disagree on the embedding dimension or are all empty: {sorted(dims)}")
        offsets = np.concatenate([[0], np.cumsum([n for n, _ in shapes])]).tolist()
        shard = (PassageIndex.build(x, ids, kind, encoder_name=encoder_name, passages=passages,
                                    encoder_info=encoder_info, **params)
                 if ids else None)
        return cls({dist.rank: shard}, offsets, dist, kind, dims.pop(), params, encoder_name, encoder_info)

    # ---------------------------------------------------------------- what this rank holds
    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def n_shards(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def passage_ids(self) -> list[str]:
        """Ids of the passages this rank holds, in global order (not the whole corpus)."""
        return [pid for s in self.shards.values() if s is not None for pid in s.passage_ids]

    @property
    def passages(self) -> dict[str, Passage] | None:
        """The passages of this rank's shards (all of them in a single process), or None if unknown."""
        out: dict[str, Passage] = {}
        for s in self.shards.values():
            if s is None:
                continue
            if s.passages is None:
                return None
            out.update(s.passages)
        return out

    @property
    def holds_everything(self) -> bool:
        return len(self.shards) == self.n_shards

    # ---------------------------------------------------------------- searching
    needs_encoder = True

    @property
    def query_encoder_name(self) -> str | None:
        return self.encoder_name

    def check_encoder(self, encoder) -> None:
        """Refuse an encoder other than the one that built these shards."""
        check_encoder(self, encoder)

    def searcher(self, encoder, *, batch_size: int = 64, check: bool = True):
        """All shards searched with ``encoder`` (:class:`~attnrag.retrieval.searcher.DenseSearcher`)."""
        from .searcher import DenseSearcher

        return DenseSearcher(self, encoder, batch_size=batch_size, check=check)

    def search(self, query_embeddings, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Global top-``k`` of this rank's queries over every shard: ``(scores [n, k], ids)``. Collective.

        Missing hits (approximate kinds) are ``-inf`` scores and shorter id lists, as in PassageIndex.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self):
            raise InputError(
                f"k must be an integer between 1 and the number of indexed passages ({len(self)}), got {k}")
        k = int(k)
        q = _as_matrix(query_embeddings, "query embeddings", allow_empty=True)
        if q.shape[1] != self.dim:
            raise InputError(f"query embeddings have dimension {q.shape[1]} but the index has {self.dim}")
        dist = self.dist
        # 1. every rank's queries, in rank order; this rank's are rows [mine, mine + n). When every
        #    rank asks the very same queries (evaluation, the trainer's retrieval for all questions)
        #    there is nothing to gather and each shard searches them once, not once per rank.
        digest = hashlib.blake2b(q.tobytes(), digest_size=16).hexdigest()
        asked = dist.all_gather_object((q.shape[0], k, digest)) if dist.enabled else [(q.shape[0], k, digest)]
        if len({a[1] for a in asked}) != 1:
            raise InputError(f"every rank must search with the same k; got {[a[1] for a in asked]}")
        if len({(a[0], a[2]) for a in asked}) == 1:
            all_q, mine = q, 0
        else:
            all_q = dist.all_gather(torch.from_numpy(q)).numpy()
            mine = sum(a[0] for a in asked[: dist.rank])
        # 2. local top-k of all queries over the shards this rank holds
        scores, pos, ids = self._local_topk(all_q, k)
        # 3. every rank's candidates for this rank's queries; merge into the global top-k
        parts = dist.all_gather_object((scores, pos, ids)) if dist.enabled else [(scores, pos, ids)]
        rows = slice(mine, mine + q.shape[0])
        cand_scores = np.concatenate([p[0][rows] for p in parts], axis=1)
        cand_pos = np.concatenate([p[1][rows] for p in parts], axis=1)
        cand_ids = [sum((p[2][r] for p in parts), []) for r in range(rows.start, rows.stop)]
        order = _rank(cand_scores, cand_pos)[:, :k]
        out_scores = np.take_along_axis(cand_scores, order, axis=1).astype(np.float32)
        out_pos = np.take_along_axis(cand_pos, order, axis=1)
        out_ids = [[row_ids[j] for j, p in zip(row_order, row_pos, strict=True) if p >= 0]
                   for row_ids, row_order, row_pos
                   in zip(cand_ids, order.tolist(), out_pos.tolist(), strict=True)]
        return out_scores, out_ids

    def _local_topk(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Top-k of ``q`` over this rank's shards: scores, global positions (-1: none), ids (padded '')."""
        n = q.shape[0]
        scores = [np.full((n, 0), -np.inf, dtype=np.float32)]
        pos = [np.full((n, 0), -1, dtype=np.int64)]
        for i, shard in self.shards.items():
            if shard is None or n == 0:
                continue
            s, rows = _ordered_search(shard.index, q, min(k, len(shard)))
            scores.append(s)
            pos.append(np.where(rows >= 0, rows + self.offsets[i], -1))
        s, p = np.concatenate(scores, axis=1), np.concatenate(pos, axis=1)
        if s.shape[1] < k:  # fewer local candidates than k: pad with empty slots
            s = np.concatenate([s, np.full((n, k - s.shape[1]), -np.inf, dtype=np.float32)], axis=1)
            p = np.concatenate([p, np.full((n, k - p.shape[1]), -1, dtype=np.int64)], axis=1)
        order = _rank(s, p)[:, :k]
        s, p = np.take_along_axis(s, order, axis=1), np.take_along_axis(p, order, axis=1)
        ids = [[self._id_at(int(g)) for g in row] for row in p]
        return s, p, ids

    def _id_at(self, position: int) -> str:
        if position < 0:
            return ""
        i = int(np.searchsorted(self.offsets, position, side="right")) - 1
        return self.shards[i].passage_ids[position - self.offsets[i]]

    # ---------------------------------------------------------------- refresh
    def refresh(self, encoder: BiEncoder, *, batch_size: int = 64, progress: bool = True) -> ShardedIndex:
        """Re-encode this rank's shards with ``encoder``'s passage tower and rebuild them (same kind and
        parameters). Every rank refreshes its own shards at the same time; collective (ends with a
        barrier, so no rank searches a mix of old and new shards)."""
        for i, shard in list(self.shards.items()):
            if shard is None:
                continue
            if shard.passages is None:
                raise InputError(f"shard {i} has no passages to re-encode; build it with passages")
            ordered = [shard.passages[pid] for pid in shard.passage_ids]
            self.shards[i] = build_index(ordered, encoder, self.kind, batch_size=batch_size,
                                         progress=progress, **self.params)
        self.encoder_name = encoder.name
        self.encoder_info = encoder_record(encoder)
        self.dist.barrier()
        return self

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write every shard (each rank its own) and the manifest, atomically as a whole. Collective."""
        directory = Path(directory)
        dist = self.dist
        ctx = atomic_dir(directory) if dist.is_main else None
        tmp = ctx.__enter__() if ctx is not None else None
        failed: BaseException | None = None
        try:
            tmp = Path(dist.broadcast_object(str(tmp) if tmp is not None else None))
            for i, shard in self.shards.items():
                if shard is not None:
                    shard.save(tmp / shard_dir_name(i))
        except Exception as exc:  # report to the others before raising, so nobody commits or hangs
            failed = exc
        ok = dist.all_true(failed is None)
        if ok and dist.is_main:
            try:
                write_json(tmp / MANIFEST, self._manifest())
            except Exception as exc:
                failed = exc
        if ctx is not None:
            if failed is None and ok:
                ctx.__exit__(None, None, None)
            else:
                err = failed or RuntimeError("another rank failed to save its shard")
                ctx.__exit__(type(err), err, err.__traceback__)
        dist.barrier()
        if failed is not None:
            raise failed
        if not ok:
            raise RuntimeError(f"another rank failed to save its shard of {directory}")
        return directory

    def _manifest(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "type": "sharded",
            "kind": self.kind,
            "dim": self.dim,
            "n": len(self),
            "params": self.params,
            "encoder_name": self.encoder_name,
            "encoder": self.encoder_info,
            "metric": "inner_product",
            "shards": [{"dir": shard_dir_name(i), "offset": self.offsets[i],
                        "n": self.offsets[i + 1] - self.offsets[i]} for i in range(self.n_shards)],
        }

    @classmethod
    def load(cls, directory: str | Path, dist: Dist | None = None) -> ShardedIndex:
        """Load the shards this rank owns (a contiguous run of them; every shard in one process)."""
        dist = dist or single_process()
        directory = Path(directory)
        if not is_sharded_dir(directory):
            raise InputError(f"not a sharded attnrag index: {MANIFEST} is missing", path=directory)
        meta = read_json_file(directory / MANIFEST, dict)
        entries = meta.get("shards")
        if not isinstance(entries, list) or not isinstance(meta.get("n"), int):
            raise InputError("the shard list or the passage count is missing", path=directory / MANIFEST)
        offsets = [e["offset"] for e in entries] + [meta["n"]]
        if any(e["offset"] + e["n"] != nxt for e, nxt in zip(entries, offsets[1:], strict=True)):
            raise InputError("shard offsets and sizes do not tile the corpus", path=directory / MANIFEST)
        start, end = shard_range(len(entries), dist.world_size, dist.rank)
        shards: dict[int, PassageIndex | None] = {}
        for i in range(start, end):
            if entries[i]["n"] == 0:
                shards[i] = None
                continue
            shard = PassageIndex.load(directory / entries[i]["dir"])
            if len(shard) != entries[i]["n"]:
                raise InputError(f"shard {i} holds {len(shard)} passages, the manifest says "
                                 f"{entries[i]['n']}", path=directory / entries[i]["dir"])
            shards[i] = shard
        return cls(shards, offsets, dist, meta["kind"], meta["dim"], meta.get("params"),
                   meta.get("encoder_name"), meta.get("encoder"))


def _ordered_search(index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss top-``k`` with ties broken by row (earlier row first), also at the k-th place.

    faiss orders equal scores by its heap, not by row, and may keep any of several passages tied for
    the k-th place. Searching ``k + 1`` shows whether the k-th score continues past k; only then (rare:
    duplicate passages) the row is searched deeper until the tie ends, and ranked by (score, row).
    """
    n_total = int(index.ntotal)
    depth = min(k + 1, n_total)
    s, r = index.search(q, depth)
    s = s.astype(np.float32)
    s[r < 0] = -np.inf
    if depth > k:
        tied = np.nonzero((r[:, k] >= 0) & (s[:, k] == s[:, k - 1]))[0]
        for row in tied.tolist():
            d = depth
            rs, rr = s[row], r[row]
            while d < n_total and rr[-1] >= 0 and rs[-1] == rs[k - 1]:
                d = min(2 * d, n_total)
                rs, rr = index.search(q[row : row + 1], d)
                rs, rr = rs[0].astype(np.float32), rr[0]
                rs[rr < 0] = -np.inf
            order = _rank(rs[None], rr[None])[0]
            s[row, :k], r[row, :k] = rs[order[:k]], rr[order[:k]]
    s, r = s[:, :k], r[:, :k]
    order = _rank(s, r)
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(r, order, axis=1)


def _rank(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row, column order by score (descending), ties by global position (ascending); empty slots
    (position -1) last."""
    missing = positions < 0
    pos_key = np.where(missing, np.iinfo(np.int64).max, positions)
    score_key = np.where(missing, np.inf, -scores.astype(np.float64))
    return np.lexsort((pos_key, score_key), axis=-1)


# ---------------------------------------------------------------------- helpers the trainer uses
def build_sharded_index(passages: Sequence[Passage], encoder: BiEncoder, dist: Dist | None = None,
                        kind: str = "flat", *, local: bool = False, batch_size: int = 64,
                        progress: bool = True, **params) -> ShardedIndex:
    """Encode and index this rank's shard of ``passages``. Collective.

    ``passages`` is the whole corpus in global order (every rank passes the same list and keeps the
    block :func:`shard_range` gives it) or, with ``local=True``, this rank's block only.
    """
    dist = dist or single_process()
    if not local:
        start, end = shard_range(len(passages), dist.world_size, dist.rank)
        passages = passages[start:end]
    passages = list(passages)
    emb = (encoder.encode_passages(passages, batch_size=batch_size, progress=progress) if passages
           else np.zeros((0, encoder.dim), dtype=np.float32))
    return ShardedIndex.build(emb, [p.id for p in passages], dist, kind, encoder_name=encoder.name,
                              passages={p.id: p for p in passages}, encoder_info=encoder_record(encoder),
                              **params)


__all__ = ["ShardedIndex", "build_sharded_index", "is_sharded_dir", "shard_dir_name"]
