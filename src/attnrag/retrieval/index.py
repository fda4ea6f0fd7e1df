"""A faiss inner-product index that speaks passage ids, and its on-disk form.

faiss only knows row numbers; :class:`PassageIndex` keeps the row -> passage id map next to it
so every caller gets ids back. A saved index is a directory written through
:func:`attnrag.io.atomic_dir` (``index.faiss``, ``ids.json``, ``meta.json`` and, when known,
``passages.jsonl``), so a process killed mid-save leaves the previous index or none, never half.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..data.records import Passage
from ..errors import InputError
from ..io import atomic_dir, read_json_file, verify_checksums, write_checksums

if TYPE_CHECKING:
    from .encoder import BiEncoder

KINDS = ("flat", "ivf", "hnsw")
FORMAT_VERSION = 1
_ALIASES = {"efSearch": "ef_search", "efConstruction": "ef_construction", "m": "M"}
_PARAMS = {"flat": set(), "ivf": {"nlist", "nprobe"}, "hnsw": {"M", "ef_search", "ef_construction"}}


class PassageIndex:
    """Passage embeddings in a faiss index (inner product) plus the row -> passage id map."""

    def __init__(
        self,
        index: faiss.Index,
        passage_ids: list[str],
        kind: str,
        params: dict | None = None,
        encoder_name: str | None = None,
        passages: dict[str, Passage] | None = None,
        encoder_info: dict | None = None,
    ) -> None:
        self.index = index
        self.passage_ids = list(passage_ids)
        self.kind = kind
        self.params = dict(params or {})
        self.encoder_name = encoder_name
        self.passages = passages  # optional id -> Passage, saved as passages.jsonl
        # which passage tower built the vectors: name, similarity, pooling, weights fingerprint
        self.encoder_info = dict(encoder_info) if encoder_info else None
        self._row = {pid: i for i, pid in enumerate(self.passage_ids)}

    # ---------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        passage_ids: Sequence[str],
        kind: str = "flat",
        *,
        encoder_name: str | None = None,
        passages: dict[str, Passage] | None = None,
        encoder_info: dict | None = None,
        **params,
    ) -> PassageIndex:
        """Index ``embeddings[i]`` under ``passage_ids[i]``.

        ``ivf``: ``nlist`` (default ~4*sqrt(n), capped so each list trains on >= 39 points),
        ``nprobe`` (default ``min(nlist, 16)``). ``hnsw``: ``M`` (32), ``ef_search`` (128),
        ``ef_construction`` (200); faiss spellings ``efSearch``/``efConstruction`` are accepted.
        """
        if kind not in KINDS:
            raise InputError(f"unknown index kind '{kind}'; expected one of {', '.join(KINDS)}", field="kind")
        params = {_ALIASES.get(k, k): v for k, v in params.items()}
        unknown = set(params) - _PARAMS[kind]
        if unknown:
            allowed = ", ".join(sorted(_PARAMS[kind])) or "none"
            raise InputError(
                f"unknown parameter(s) {sorted(unknown)} for a '{kind}' index; allowed: {allowed}"
            )
        x = _as_matrix(embeddings, "embeddings")
        ids = [str(i) for i in passage_ids]
        if len(ids) != x.shape[0]:
            raise InputError(
                f"{x.shape[0]} embeddings but {len(ids)} passage ids; they must match one to one"
            )
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise InputError(f"duplicate passage id '{dup}'; passage ids must be unique", field="id")
        n, d = x.shape
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = int(params.get("nlist") or max(1, min(int(4 * math.sqrt(n)), n // 39)))
            if not 1 <= nlist <= n:
                raise InputError(f"nlist must be between 1 and the number of passages ({n}), got {nlist}")
            params.update(nlist=nlist, nprobe=int(params.get("nprobe") or min(nlist, 16)))
            index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            index.train(x)
        else:
            params = {"M": 32, "ef_search": 128, "ef_construction": 200} | params
            index = faiss.IndexHNSWFlat(d, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(params["ef_construction"])
        index.add(x)
        out = cls(index, ids, kind, params, encoder_name, passages, encoder_info)
        out._apply_search_params()
        return out

    def _apply_search_params(self) -> None:
        if self.kind == "ivf":
            faiss.extract_index_ivf(self.index).nprobe = int(self.params["nprobe"])
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = int(self.params["ef_search"])

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Trade speed for recall after building (ivf: ``nprobe``; hnsw: ``ef_search``)."""
        if nprobe is not None and self.kind == "ivf":
            self.params["nprobe"] = int(nprobe)
        if ef_search is not None and self.kind == "hnsw":
            self.params["ef_search"] = int(ef_search)
        self._apply_search_params()

    # ---------------------------------------------------------------- querying
    needs_encoder = True  # a dense index is searched with a query encoder

    @property
    def query_encoder_name(self) -> str | None:
        """The encoder the index was built with (the default query encoder of its searcher)."""
        return self.encoder_name

    def check_encoder(self, encoder: BiEncoder) -> None:
        """Refuse an encoder other than the one that built this index (:func:`check_encoder`)."""
        check_encoder(self, encoder)

    def searcher(self, encoder: BiEncoder, *, batch_size: int = 64, check: bool = True):
        """This index searched with ``encoder`` (:class:`~attnrag.retrieval.searcher.DenseSearcher`)."""
        from .searcher import DenseSearcher

        return DenseSearcher(self, encoder, batch_size=batch_size, check=check)

    def __len__(self) -> int:
        return len(self.passage_ids)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, query_embeddings, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` passages per query by inner product: ``(scores [n, k], ids)``.

        An approximate index can find fewer than ``k`` hits; then that query's id list is shorter
        and its missing scores are ``-inf``.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self):
            raise InputError(
                f"k must be an integer between 1 and the number of indexed passages ({len(self)}), got {k}"
            )
        q = _as_matrix(query_embeddings, "query embeddings", allow_empty=True)
        if q.shape[1] != self.dim:
            raise InputError(f"query embeddings have dimension {q.shape[1]} but the index has {self.dim}")
        scores, rows = self.index.search(q, int(k))
        scores[rows < 0] = -np.inf
        ids = [[self.passage_ids[r] for r in row if r >= 0] for row in rows]
        return scores, ids

    def reconstruct(self, passage_id: str) -> np.ndarray:
        """The stored embedding of one passage (exact for flat and hnsw; ivf keeps vectors as is)."""
        if passage_id not in self._row:
            raise InputError(f"passage id '{passage_id}' is not in the index")
        if self.kind == "ivf":
            ivf = faiss.extract_index_ivf(self.index)
            if ivf.direct_map.type == faiss.DirectMap.NoMap:
                ivf.make_direct_map()
        return self.index.reconstruct(self._row[passage_id])

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the index directory atomically (old copy stays until the new one is complete)."""
        with atomic_dir(directory) as tmp:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            _write(tmp / "ids.json", self.passage_ids)
            meta = {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "dim": self.dim,
                "n": len(self),
                "params": self.params,
                "encoder_name": self.encoder_name,
                "encoder": self.encoder_info,
                "metric": "inner_product",
                "has_passages": self.passages is not None,
            }
            _write(tmp / "meta.json", meta)
            if self.passages is not None:
                with open(tmp / "passages.jsonl", "w", encoding="utf-8") as fh:
                    for pid in self.passage_ids:
                        fh.write(json.dumps(self.passages[pid].to_dict(), ensure_ascii=False) + "\n")
            write_checksums(tmp)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> PassageIndex:
        """Read a directory written by :meth:`save` (with its passages when it has them)."""
        directory = Path(directory)
        for name in ("index.faiss", "ids.json", "meta.json"):
            if not (directory / name).is_file():
                raise InputError(f"not an attnrag index directory: {name} is missing", path=directory)
        verify_checksums(directory, "rebuild the index (attnrag index build)")
        meta = read_json_file(directory / "meta.json", dict)
        ids = read_json_file(directory / "ids.json", list)
        if not all(isinstance(i, str) for i in ids):
            raise InputError("ids.json must be a list of passage id strings", path=directory / "ids.json")
        if not isinstance(meta.get("kind"), str):
            raise InputError("meta.json has no index kind", path=directory / "meta.json", field="kind")
        try:
            index = faiss.read_index(str(directory / "index.faiss"))
        except RuntimeError as exc:  # FAISS reports a truncated or foreign file as a RuntimeError
            raise InputError(f"FAISS cannot read it ({str(exc).strip().splitlines()[-1][:200]}); the file is "
                             "damaged: rebuild the index (attnrag index build)", path=directory / "index.faiss") from exc
        if index.ntotal != len(ids):
            raise InputError(
                f"index holds {index.ntotal} vectors but ids.json lists {len(ids)}", path=directory
            )
        passages = (
            read_passages(directory / "passages.jsonl") if (directory / "passages.jsonl").is_file() else None
        )
        out = cls(index, ids, meta["kind"], meta.get("params"), meta.get("encoder_name"), passages,
                  meta.get("encoder"))
        out._apply_search_params()
        return out


def build_index(
    passages: Sequence[Passage],
    encoder: BiEncoder,
    kind: str = "flat",
    *,
    batch_size: int = 64,
    progress: bool = True,
    **params,
) -> PassageIndex:
    """Encode ``passages`` with the passage tower and index them, keeping the passages for lookup."""
    if not passages:
        raise InputError("cannot build an index over zero passages")
    emb = encoder.encode_passages(passages, batch_size=batch_size, progress=progress)
    by_id = {p.id: p for p in passages}
    return PassageIndex.build(
        emb, [p.id for p in passages], kind, encoder_name=encoder.name, passages=by_id,
        encoder_info=encoder_record(encoder), **params
    )


def encoder_record(encoder: BiEncoder) -> dict:
    """What an index records about the passage tower that built it (see :func:`check_encoder`)."""
    return {"name": encoder.name, "similarity": encoder.similarity, "pooling": encoder.pooling,
            "passage_max_length": encoder.passage_max_length, "fingerprint": encoder.passage_fingerprint()}


def check_encoder(index, encoder: BiEncoder, where: str | Path | None = None) -> None:
    """Refuse to search ``index`` with an encoder other than the one that built it.

    Query vectors from another passage tower of the same dimension return neighbours without any
    error, and wrong ones; so an index records the building tower's similarity and weights
    fingerprint, and a search whose encoder's passage tower differs is refused. Indexes written
    before attnrag recorded the encoder hold unnormalised (dot-product) vectors: they are refused
    for a cosine encoder and accepted, unchecked, for a dot-product one.
    """
    if not hasattr(encoder, "passage_fingerprint"):  # a stand-in query encoder (tests, custom code): unchecked
        return
    info = index.encoder_info
    if index.dim != encoder.dim:
        raise InputError(f"the index holds {index.dim}-dim vectors but the encoder {encoder.name} makes "
                         f"{encoder.dim}-dim ones; rebuild the index with this encoder", path=where)
    if not info:
        if encoder.similarity != "dot":
            raise InputError(f"the index was built before attnrag recorded the encoder's similarity (its vectors "
                             f"are unnormalised dot-product vectors) but {encoder.name} scores with "
                             f"{encoder.similarity}; rebuild it: attnrag index build --encoder {encoder.name}",
                             path=where)
        return
    mine = encoder_record(encoder)
    for key in ("similarity", "fingerprint"):
        if info.get(key) is not None and info.get(key) != mine[key]:
            raise InputError(
                f"the index was built by encoder {info.get('name')} ({key} {info.get(key)}) but the search uses "
                f"{encoder.name} ({key} {mine[key]}): its query vectors do not match the index; rebuild the "
                f"index with this encoder (attnrag index build --encoder ...) or search with the one that built "
                "it", path=where)


def search_questions(
    index: PassageIndex,
    encoder: BiEncoder,
    questions: Sequence[str],
    k: int,
    batch_size: int = 64,
    check: bool = True,
) -> tuple[np.ndarray, list[list[str]]]:
    """Top-``k`` ``(scores, ids)`` of ``questions`` from any index, through its searcher
    (:mod:`attnrag.retrieval.searcher`): a dense index with ``encoder``, BM25 without one, a hybrid
    with ``encoder`` on its dense side. ``check`` refuses an encoder other than the one that built a
    dense index (:func:`check_encoder`); the trainer turns it off for its own, re-encoded index.
    """
    searcher = index.searcher(encoder, batch_size=batch_size, check=check) if index.needs_encoder else index.searcher()
    return searcher.search(list(questions), k)


def retrieve(
    index: PassageIndex,
    passages_by_id: dict[str, Passage],
    encoder: BiEncoder,
    questions: Sequence[str],
    k: int,
    batch_size: int = 64,
) -> tuple[np.ndarray, list[list[Passage]]]:
    """Top-``k`` passages per question: ``(scores [n, k], passages)``."""
    scores, ids = search_questions(index, encoder, questions, k, batch_size=batch_size)
    return scores, [[passages_by_id[i] for i in row] for row in ids]


def read_passages(path: str | Path) -> dict[str, Passage]:
    """Read the ``passages.jsonl`` that :meth:`PassageIndex.save` writes (id -> Passage, file order)."""
    out: dict[str, Passage] = {}
    way_out = "the file is damaged: rebuild the index (attnrag index build)"
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg}); {way_out}", path=path, line=number) from exc
            field = "id" if not isinstance(row, dict) or not isinstance(row.get("id"), str) else \
                "text" if not isinstance(row.get("text"), str) else None
            if field is not None:
                raise InputError(f"a passage needs a string '{field}'; {way_out}", path=path, line=number, field=field)
            out[row["id"]] = Passage(row["id"], row.get("title", ""), row["text"], row.get("section"))
    return out


def _as_matrix(x, what: str, allow_empty: bool = False) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or (x.shape[0] == 0 and not allow_empty):
        raise InputError(f"{what} must be a non-empty 2-D array [n, dim], got shape {x.shape}")
    return x


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")
