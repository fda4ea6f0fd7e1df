"""BM25, the first stage every RAG user already has: a lexical index beside the FAISS ones.

Built with ``bm25s`` (sparse, precomputed BM25 scores; no Java, no server) and ``PyStemmer``
(Snowball). It indexes exactly the text the dense passage tower sees (``title | text``,
:func:`~attnrag.retrieval.encoder.passage_to_text`), so BM25, dense and hybrid rankings are over the
same passages. :class:`BM25Index` is its own searcher (:mod:`attnrag.retrieval.searcher`:
``search(questions, k) -> (scores, ids)``, the call every first stage answers), so every stage that
takes an index (retrieve, evaluate, the trainer's candidates, the paired bootstrap) takes it too.

Saved as a directory written atomically: ``meta.json`` (kind ``bm25`` and a record of tokenizer,
stemmer, stop words, BM25 variant, ``k1`` / ``b`` and the library versions), ``ids.json``,
``passages.jsonl`` and ``bm25/`` (bm25s' own JSON + ``.npy`` files, read with ``allow_pickle=False``).
Nothing is unpickled, and the parameters read back are checked before bm25s sees them.

A question of stop words or unknown terms only scores 0 against every passage: it gets ``k`` passages
with score 0 (in corpus order), not a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..data.records import Passage
from ..errors import InputError
from ..io import atomic_dir, read_json_file, verify_checksums, write_checksums
from .encoder import passage_to_text

KIND = "bm25"
FORMAT_VERSION = 1
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s' (and scikit-learn's) default: words of two or more characters


@dataclass(frozen=True)
class BM25Config:
    """How passages and questions are tokenised and scored.

    Attributes:
        k1: term-frequency saturation (bm25s' default 1.5; Lucene's is 1.2, pyserini's 0.9).
        b: length normalisation (0.75 in every common implementation).
        method: the BM25 variant, ``lucene`` (what Elasticsearch / pyserini compute) by default.
        stemmer: a Snowball language for PyStemmer, or ``""`` for no stemming.
        stopwords: ``en`` (bm25s' English list) or ``""`` for none.
    """

    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"
    stopwords: str = "en"

    def validate(self) -> BM25Config:
        if self.method not in METHODS:
            raise InputError(f"unknown BM25 method '{self.method}'; expected one of {', '.join(METHODS)}",
                             field="method")
        if not (isinstance(self.k1, int | float) and self.k1 >= 0):
            raise InputError(f"k1 must be a number >= 0, got {self.k1!r}", field="k1")
        if not (isinstance(self.b, int | float) and 0 <= self.b <= 1):
            raise InputError(f"b must be a number in [0, 1], got {self.b!r}", field="b")
        if self.stopwords not in ("en", ""):
            raise InputError(f"stopwords must be 'en' or '', got {self.stopwords!r}", field="stopwords")
        if self.stemmer:
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise InputError(f"unknown stemmer '{self.stemmer}'; PyStemmer has {', '.join(Stemmer.algorithms())}",
                                 field="stemmer")
        return self


def _tokenizer(config: BM25Config):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
    return bm25s.tokenization.Tokenizer(splitter=TOKEN_PATTERN, stopwords=config.stopwords or None,
                                        stemmer=stemmer)


def tokenize(texts: Sequence[str], config: BM25Config) -> list[list[str]]:
    """Lower-cased, stop-word-free, stemmed word tokens (bm25s' tokenizer with PyStemmer)."""
    tokens = _tokenizer(config).tokenize(list(texts), return_as="string", show_progress=False)
    return [[t for t in row if t] for row in tokens]


def stable_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` highest scores, highest first, ties in index order: the first ``k``
    of a full stable sort (``np.lexsort((arange, -scores))``, tested equal), found by a partial
    selection and a sort of the top slice only. Tied scores at the cut keep the lowest indices.

    BM25 gives most passages exactly 0, so when at least ``k`` scores are positive the selection
    runs over those alone (the top ``k`` are all among them); selecting the ``k``-th highest value
    with ``np.partition(-scores, k - 1)`` keeps the pivot away from the mass of ties at 0, where
    ``np.partition(scores, n - k)`` degenerates (measured: 2 ms against 0.07 ms at 20,000 passages).
    """
    n = len(scores)
    if k >= n:
        return np.lexsort((np.arange(n), -scores))
    positive = np.flatnonzero(scores > 0)
    if len(positive) >= k:
        return positive[_top_k_of(scores[positive], k)]
    return _top_k_of(scores, k)


def _top_k_of(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`stable_top_k` of ``scores`` (``k < len(scores)``), indices into ``scores``."""
    if k >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th highest score
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]
    top = np.concatenate([above, tied])
    return top[np.lexsort((top, -scores[top]))]


class BM25Index:
    """BM25 over a passage collection; its own searcher: ``search(questions, k) -> (scores [n, k], ids)``."""

    kind = KIND

    def __init__(self, retriever, passage_ids: list[str], config: BM25Config,
                 passages: dict[str, Passage] | None = None) -> None:
        self.retriever = retriever
        self.passage_ids = list(passage_ids)
        self.config = config
        self.passages = passages

    needs_encoder = False  # BM25 searches the question's words
    query_encoder_name = None

    def searcher(self) -> BM25Index:
        """A BM25 index is its own searcher."""
        return self

    def __len__(self) -> int:
        return len(self.passage_ids)

    @classmethod
    def build(cls, passages: Sequence[Passage], config: BM25Config | None = None) -> BM25Index:
        import bm25s

        config = (config or BM25Config()).validate()
        if not passages:
            raise InputError("cannot build an index over zero passages")
        ids = [p.id for p in passages]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError(f"duplicate passage id '{dup}'; passage ids must be unique", field="id")
        retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
        corpus = tokenize([passage_to_text(p) for p in passages], config)
        # bm25s cannot index an empty vocabulary: a corpus of stop words only has nothing to find
        if not any(corpus):
            raise InputError("no passage has a single indexable word (all stop words or one-letter tokens)")
        retriever.index(corpus, show_progress=False)
        return cls(retriever, ids, config, {p.id: p for p in passages})

    def search(self, questions: Sequence[str], k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-``k`` passages per question by BM25 score (ties and all-zero rows in corpus order)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= len(self):
            raise InputError(f"k must be an integer between 1 and the number of indexed passages ({len(self)}), got {k}")
        k = int(k)
        vocab = self.retriever.vocab_dict
        queries = [[t for t in row if t in vocab] for row in tokenize(questions, self.config)]
        scores = np.zeros((len(queries), k), dtype=np.float32)
        rows = np.tile(np.arange(k), (len(queries), 1))
        asked = [i for i, q in enumerate(queries) if q]
        if asked:
            # every passage's score, then a stable order: bm25s' own top-k breaks ties arbitrarily
            for i in asked:
                full = self.retriever.get_scores(queries[i])
                order = stable_top_k(full, k)
                rows[i], scores[i] = order, full[order]
        ids = [[self.passage_ids[r] for r in row] for row in rows]
        return scores, ids

    def record(self) -> dict:
        """What was indexed and how: enough to rebuild it and to say which BM25 a result used."""
        return {"tokenizer": f"bm25s.tokenization.Tokenizer(splitter={TOKEN_PATTERN!r}, lower=True)",
                "passage_text": "title | text", **asdict(self.config),
                "versions": {"bm25s": version("bm25s"), "PyStemmer": version("PyStemmer"),
                             "numpy": version("numpy")}}

    def save(self, directory: str | Path) -> Path:
        with atomic_dir(directory) as tmp:
            self.retriever.save(str(tmp / "bm25"), allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(self.passage_ids, ensure_ascii=False) + "\n", encoding="utf-8")
            meta = {"format_version": FORMAT_VERSION, "kind": KIND, "n": len(self), "bm25": self.record(),
                    "has_passages": self.passages is not None}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            if self.passages is not None:
                with open(tmp / "passages.jsonl", "w", encoding="utf-8") as fh:
                    for pid in self.passage_ids:
                        fh.write(json.dumps(self.passages[pid].to_dict(), ensure_ascii=False) + "\n")
            write_checksums(tmp)
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        import bm25s

        from .index import read_passages

        directory = Path(directory)
        for name in ("meta.json", "ids.json", "bm25/params.index.json"):
            if not (directory / name).is_file():
                raise InputError(f"not an attnrag BM25 index directory: {name} is missing", path=directory)
        verify_checksums(directory, "rebuild the index (attnrag index build --kind bm25)")
        meta = read_json_file(directory / "meta.json", dict)
        if meta.get("kind") != KIND:
            raise InputError(f"meta.json says kind {meta.get('kind')!r}, not {KIND!r}", path=directory / "meta.json")
        record = meta.get("bm25") or {}
        fields = {f: record[f] for f in ("k1", "b", "method", "stemmer", "stopwords") if f in record}
        config = BM25Config(**fields).validate()
        params = read_json_file(directory / "bm25/params.index.json", dict)
        unexpected = set(params) - {"k1", "b", "delta", "method", "idf_method", "dtype", "int_dtype", "num_docs",
                                    "version", "backend"}
        if unexpected:
            raise InputError(f"unexpected BM25 parameters {sorted(unexpected)}", path=directory / "bm25/params.index.json")
        ids = read_json_file(directory / "ids.json", list)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError("ids.json must be a list of passage id strings", path=directory / "ids.json")
        try:
            retriever = bm25s.BM25.load(str(directory / "bm25"), allow_pickle=False, load_corpus=False)
        except (OSError, ValueError, KeyError, EOFError) as exc:  # a truncated or missing array file
            raise InputError(f"bm25s cannot load its arrays ({type(exc).__name__}: {str(exc)[:200]}); the index is "
                             "damaged: rebuild it (attnrag index build --kind bm25)", path=directory / "bm25") from exc
        if params.get("num_docs") not in (None, len(ids)):
            raise InputError(f"the BM25 index holds {params['num_docs']} passages but ids.json lists {len(ids)}",
                             path=directory)
        passages = read_passages(directory / "passages.jsonl") if (directory / "passages.jsonl").is_file() else None
        return cls(retriever, ids, config, passages)


def is_lexical_dir(directory: str | Path) -> bool:
    meta = Path(directory) / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("kind") == KIND
    except (json.JSONDecodeError, AttributeError):
        return False
