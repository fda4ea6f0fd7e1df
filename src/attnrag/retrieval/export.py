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
from .fusion import DEFAULT_DEPTH

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
        lines += ["With the BM25 index exported beside the model (`bm25/`, `attnrag_hybrid.json`):", "",
                  "```python", "from attnrag.retrieval.export import load_exported_hybrid", "",
                  "hybrid = load_exported_hybrid(\"path/to/this/directory\")",
                  "scores, ids = hybrid.search([\"your question\"], k=10)", "```", ""]
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


HYBRID_FILE = "attnrag_hybrid.json"


def add_bm25(out: str | Path, lexical, weight: float, depth: int = DEFAULT_DEPTH, tuning: dict | None = None) -> Path:
    """Put a BM25 index and the convex fusion weight beside an exported sentence-transformers model,
    so the export carries the hybrid the dev split chose (``bm25/`` and ``attnrag_hybrid.json``)."""
    out = Path(out)
    if not 0 <= float(weight) <= 1:
        raise InputError(f"the BM25 weight must be in [0, 1], got {weight}", field="hybrid_weight")
    lexical.save(out / "bm25")
    meta = {"fusion": "convex", "weight": float(weight), "depth": int(depth), "bm25": "bm25/",
            "normalisation": "min-max within each question's list; a passage missing from one side scores 0",
            **({"tuning": tuning} if tuning else {})}
    (out / HYBRID_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
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
    dense side is the model itself: ``search(questions, k) -> (scores, ids)``."""
    from .lexical import BM25Index

    directory = Path(directory)
    meta_path = directory / HYBRID_FILE
    if not meta_path.is_file():
        raise InputError(f"no {HYBRID_FILE}: this export carries no BM25 index (export with --bm25)", path=directory)
    meta = read_json_file(meta_path, dict)
    weight, depth = meta.get("weight"), meta.get("depth")
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 <= weight <= 1:
        raise InputError("weight must be a number in [0, 1]", path=meta_path, field="weight")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise InputError("depth must be an integer >= 1", path=meta_path, field="depth")
    _, SentenceTransformer, *_ = _modules()
    from .searcher import HybridSearcher

    lexical = BM25Index.load(directory / "bm25")
    dense = SentenceTransformerSearcher(SentenceTransformer(str(directory), device="cpu"), lexical.passages,
                                        lexical.passage_ids)
    return HybridSearcher(lexical, dense, "convex", weight, depth)
