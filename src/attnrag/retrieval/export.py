"""Take a trained retriever out: a sentence-transformers directory any RAG stack can load.

An attnrag retriever is a bi-encoder: by default a trained query tower and a frozen passage tower
(query-side distillation), or one tied tower. sentence-transformers (and through it LangChain,
LlamaIndex, Haystack and most vector databases) loads a directory of *modules*. The export writes:

* tied retriever: ``Transformer -> Pooling [-> Normalize]``, one model;
* untied retriever: a ``Router`` with a ``query`` route (the trained tower) and a ``document``
  route (the passage tower that built your index), then ``Normalize`` for a cosine retriever, so
  ``model.encode_query`` / ``model.encode_document`` use the right tower.

Pooling, normalisation and max length are the retriever's own (:class:`attnrag.retrieval.encoder.EncoderSpec`),
so ``SentenceTransformer(out)`` reproduces attnrag's embeddings (tested to 1e-5). A ``README.md``
model card, generated from the facts the caller passes (base model, teacher reader, setting, data,
steps, measured metrics), documents what the model is and how it was measured.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import InputError
from ..io import atomic_dir, read_json_file
from .encoder import BiEncoder
from .fusion import DEFAULT_DEPTH, FusionConfig, check_weight

MIN_SENTENCE_TRANSFORMERS = "5.0"  # Router with query/document routes, encode_query / encode_document


def _modules():
    try:
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize, Pooling, Router, Transformer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise InputError(f"exporting needs sentence-transformers >= {MIN_SENTENCE_TRANSFORMERS}: {exc}") from exc
    return sentence_transformers, SentenceTransformer, Normalize, Pooling, Router, Transformer


def export_sentence_transformers(encoder: BiEncoder, out: str | Path, card: dict | None = None,
                                 extra=None) -> Path:
    """Write ``encoder`` as a sentence-transformers directory at ``out`` (atomically) and return it.

    ``card``: facts for the model card (see :func:`render_model_card`); the card always states the
    towers, pooling, similarity and max length. ``extra(directory)`` writes more files into the
    directory before it is moved into place (:func:`add_bm25`).
    """
    import warnings

    st, SentenceTransformer, Normalize, Pooling, Router, Transformer = _modules()
    with tempfile.TemporaryDirectory() as staging, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # sentence_transformers.models path (5.x and 6.x)
        staging = Path(staging)

        def pipeline(tower, name: str) -> list:
            tower.save_pretrained(staging / name)
            encoder.tokenizer.save_pretrained(staging / name)
            transformer = Transformer(str(staging / name), max_seq_length=encoder.passage_max_length
                                      if name == "document" else encoder.query_max_length)
            return [transformer, Pooling(encoder.dim, encoder.pooling)]

        if encoder.tied:
            modules = pipeline(encoder.query_encoder, "query")
        else:  # each route's Transformer carries its own max_seq_length
            modules = [Router.for_query_document(query_modules=pipeline(encoder.query_encoder, "query"),
                                                 document_modules=pipeline(encoder.passage_encoder, "document"))]
        if encoder.similarity == "cosine":
            modules.append(Normalize())
        model = SentenceTransformer(modules=modules, similarity_fn_name=encoder.similarity
                                    if encoder.similarity == "cosine" else "dot", device="cpu")
        with atomic_dir(out) as tmp:
            model.save(str(tmp))
            facts = {"towers": "tied (one model)" if encoder.tied else
                     "untied: `query` route = trained query tower, `document` route = passage tower",
                     "pooling": encoder.pooling, "similarity": encoder.similarity,
                     "max_seq_length": encoder.passage_max_length, "dimension": encoder.dim,
                     "sentence_transformers_version": st.__version__, **(card or {})}
            (tmp / "README.md").write_text(render_model_card(facts), encoding="utf-8")
            (tmp / "attnrag_export.json").write_text(json.dumps(facts, indent=2, default=str) + "\n",
                                                     encoding="utf-8")
            if extra is not None:
                extra(tmp)
    return Path(out)


def render_model_card(facts: dict) -> str:
    """A sentence-transformers style model card from ``facts`` (missing facts are left out, never guessed).

    Known keys: ``base_model``, ``reader``, ``setting``, ``teacher``, ``data``, ``train_questions``,
    ``distill_questions``, ``reader_steps``, ``distill_steps``, ``run``, ``metrics`` (a list of
    ``{"split", "n", "name", "value"}`` or a dict of dicts), ``provenance`` (commit, command).
    """
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
             "tags:", "- sentence-transformers", "- feature-extraction", "- attnrag", "- attention-distillation"]
    if facts.get("base_model"):
        lines.append(f"base_model: {facts['base_model']}")
    lines += ["---", "", "# Retriever trained with attnrag (attention distillation)", "",
              "This retriever was trained without (question, passage) labels: a reader language model read "
              "retrieved passages, and the attention it paid to each passage while producing the answer was "
              "distilled into the retriever (`KL(p_ATTN || p_RETR)`; Li et al., NAACL 2024; attnrag).", "",
              "## Model", ""]
    for key, label in (("base_model", "Base retriever"), ("towers", "Towers"), ("hybrid", "Hybrid"), ("pooling", "Pooling"),
                       ("similarity", "Similarity"), ("max_seq_length", "Maximum sequence length"),
                       ("dimension", "Output dimension")):
        if facts.get(key) is not None:
            lines.append(f"- **{label}:** {facts[key]}")
    lines += ["", "## Training", ""]
    for key, label in (("setting", "attnrag setting"), ("reader", "Reader (teacher)"), ("teacher", "Teacher signal"),
                       ("data", "Data"), ("train_questions", "Reader fine-tuning questions"),
                       ("reader_steps", "Reader steps"), ("distill_questions", "Distillation questions"),
                       ("distill_steps", "Distillation steps"), ("run", "attnrag run directory")):
        if facts.get(key) is not None:
            lines.append(f"- **{label}:** {facts[key]}")
    metrics = facts.get("metrics")
    if metrics:
        lines += ["", "## Evaluation (measured by attnrag)", "", "| split | questions | metric | value |",
                  "|---|---|---|---|"]
        for row in _metric_rows(metrics):
            lines.append(f"| {row.get('split', '?')} | {row.get('n', '?')} | {row['name']} | {row['value']:.3f} |")
    prov = facts.get("provenance") or {}
    if prov:
        lines += ["", "## Provenance", ""]
        for key in ("command", "commit", "dirty", "machine", "finished_at"):
            if prov.get(key) is not None:
                lines.append(f"- **{key}:** `{prov[key]}`")
    lines += ["", "## Usage", "", "```python", "from sentence_transformers import SentenceTransformer", "",
              "model = SentenceTransformer(\"path/to/this/directory\")",
              "queries = model.encode_query([\"your question\"])",
              "passages = model.encode_document([\"title | passage text\"])",
              "scores = model.similarity(queries, passages)", "```", "",
              "Passages were encoded as `title | text` during training; encode yours the same way.", ""]
    if facts.get("hybrid"):
        lines += ["## Hybrid: BM25 + this model", "",
                  "The BM25 index (`lexical/`, bm25s's format) and the fusion chosen on dev (`meta.json`) are "
                  "exported beside the model. attnrag loads the hybrid with "
                  "`attnrag.retrieval.store.load_searcher(\"path/to/this/directory\")`; with bm25s, PyStemmer and "
                  "sentence-transformers alone it ranks the same way:", "",
                  "```python", HYBRID_SNIPPET.strip(), "```", ""]
    return "\n".join(lines)


def _metric_rows(metrics) -> list[dict]:
    if isinstance(metrics, dict):
        rows = []
        for split, values in metrics.items():
            n = values.get("n") if isinstance(values, dict) else None
            for name, value in (values.items() if isinstance(values, dict) else []):
                if name != "n" and isinstance(value, int | float):
                    rows.append({"split": split, "n": n, "name": name, "value": float(value)})
        return rows
    return [dict(r) for r in metrics if isinstance(r.get("value"), int | float)]


LEGACY_HYBRID_FILE = "attnrag_hybrid.json"  # exports written before the one hybrid format (bm25/ beside it)

#: the model card's hybrid search without attnrag (tested in a subprocess where attnrag cannot be
#: imported, against attnrag's own hybrid search): BM25 and the model each rank the corpus, each top
#: ``depth`` list is min-max normalised, and ``weight * bm25 + (1 - weight) * dense`` ranks the union
HYBRID_SNIPPET = r"""
import json

import bm25s
import numpy as np
import Stemmer
from sentence_transformers import SentenceTransformer

path = "path/to/this/directory"
meta = json.load(open(f"{path}/meta.json"))  # the fusion weight and depth chosen on dev
lexical = f"{path}/{meta['lexical']}"
setup = json.load(open(f"{lexical}/meta.json"))["bm25"]
bm25 = bm25s.BM25.load(f"{lexical}/bm25")
ids = json.load(open(f"{lexical}/ids.json"))
passages = {p["id"]: p for p in map(json.loads, open(f"{lexical}/passages.jsonl", encoding="utf-8"))}
model = SentenceTransformer(path)
texts = [f"{p['title']} | {p['text']}" if p["title"] else p["text"] for p in (passages[i] for i in ids)]
documents = model.encode_document(texts, convert_to_tensor=True)


def top(scores, depth):  # best first, ties in corpus order; min-max normalised
    order = np.lexsort((np.arange(len(scores)), -scores))[:depth]
    kept = scores[order].astype(np.float64)
    span = kept.max() - kept.min()
    return order, (kept - kept.min()) / span if span > 0 else np.ones_like(kept)


def words(question):  # a fresh tokenizer each time: bm25s's keeps the vocabulary of its first call
    tokenizer = bm25s.tokenization.Tokenizer(splitter=r"(?u)\b\w\w+\b", stopwords=setup["stopwords"] or None,
                                             stemmer=Stemmer.Stemmer(setup["stemmer"]) if setup["stemmer"] else None)
    tokens = tokenizer.tokenize([question], return_as="string", show_progress=False)[0]
    return [t for t in tokens if t and t in bm25.vocab_dict]  # the index's words ("" marks a removed one)


def search(question, k=10):
    depth = min(len(ids), max(k, meta["depth"]))
    tokens = words(question)
    lexical_scores = bm25.get_scores(tokens).astype(np.float32) if tokens else np.zeros(len(ids), np.float32)
    dense_scores = model.similarity(model.encode_query([question], convert_to_tensor=True), documents)[0]
    fused, first_seen = {}, {}
    for side, (scores, share) in enumerate(((lexical_scores, meta["weight"]),
                                            (dense_scores.cpu().numpy(), 1 - meta["weight"]))):
        for rank, (i, norm) in enumerate(zip(*top(scores, depth))):
            first_seen.setdefault(ids[i], side * 10**9 + rank)
            fused[ids[i]] = fused.get(ids[i], 0.0) + share * float(norm)
    best = sorted(fused, key=lambda pid: (-fused[pid], first_seen[pid]))[:k]
    return [(pid, fused[pid]) for pid in best]


print(search("your question"))
"""


def add_bm25(out: str | Path, lexical, weight: float, depth: int = DEFAULT_DEPTH, tuning: dict | None = None) -> Path:
    """Make an exported sentence-transformers model directory a hybrid in attnrag's one hybrid format
    (:mod:`attnrag.retrieval.hybrid`): the BM25 index in ``lexical/`` and ``meta.json`` with the convex
    weight (chosen on dev: ``tuning``) and the model itself (``.``) as the dense side."""
    from .hybrid import write_hybrid_meta

    out = Path(out)
    check_weight(weight)
    lexical.save(out / "lexical")
    write_hybrid_meta(out, "convex", weight, depth, len(lexical), dense_format="sentence-transformers",
                      dense_path=".", extra={"tuning": tuning} if tuning else None)
    return out


class SentenceTransformerSearcher:
    """The dense side of an exported hybrid: the sentence-transformers model itself
    (``encode_query`` / ``encode_document``, its own similarity) over the passages the BM25 index
    holds. Document embeddings are computed once, on the first search; ties keep corpus order."""

    def __init__(self, model, passages: dict, passage_ids: list[str]) -> None:
        self.model, self.passages, self.passage_ids = model, passages, list(passage_ids)
        self._documents = None

    def __len__(self) -> int:
        return len(self.passage_ids)

    def search(self, questions, k: int):
        import numpy as np

        from .encoder import passage_to_text

        if self._documents is None:
            texts = [passage_to_text(self.passages[i]) for i in self.passage_ids]
            self._documents = self.model.encode_document(texts, convert_to_tensor=True)
        queries = self.model.encode_query(list(questions), convert_to_tensor=True)
        scores = self.model.similarity(queries, self._documents).cpu().numpy()
        order = np.argsort(-scores, axis=1, kind="stable")[:, : int(k)]
        return np.take_along_axis(scores, order, axis=1), [[self.passage_ids[j] for j in row] for row in order]


def load_exported_hybrid(directory: str | Path):
    """The sentence-transformers model at ``directory`` with the BM25 index and weight exported beside
    it, as attnrag's one hybrid searcher (:class:`~attnrag.retrieval.searcher.HybridSearcher`) whose
    dense side is the model itself: ``search(questions, k) -> (scores, ids)``. Reads the one hybrid
    format (``meta.json``, ``lexical/``) and exports written before it (``attnrag_hybrid.json``, ``bm25/``)."""
    from .hybrid import read_hybrid_meta
    from .lexical import BM25Index

    directory = Path(directory)
    if (directory / "meta.json").is_file():
        meta = read_hybrid_meta(directory)
        if meta["dense"]["format"] != "sentence-transformers":
            raise InputError("this hybrid's dense side is an attnrag FAISS index, not an exported model: load it "
                             "with attnrag.retrieval.store.load_searcher", path=directory)
        fusion, weight, depth = meta["fusion"], meta["weight"], meta["depth"]
        lexical_dir, model_dir = directory / meta["lexical"], directory / meta["dense"]["path"]
    elif (directory / LEGACY_HYBRID_FILE).is_file():
        meta_path = directory / LEGACY_HYBRID_FILE
        meta = read_json_file(meta_path, dict)
        checked = FusionConfig.read({**meta, "fusion": "convex"}, meta_path)
        fusion, weight, depth = checked.fusion, checked.weight, checked.depth
        lexical_dir, model_dir = directory / "bm25", directory
    else:
        raise InputError("this export carries no BM25 index (no meta.json of a hybrid): export with --bm25",
                         path=directory)
    _, SentenceTransformer, *_ = _modules()
    from .searcher import HybridSearcher

    lexical = BM25Index.load(lexical_dir)
    dense = SentenceTransformerSearcher(SentenceTransformer(str(model_dir), device="cpu"), lexical.passages,
                                        lexical.passage_ids)
    return HybridSearcher(lexical, dense, fusion, weight, depth)
