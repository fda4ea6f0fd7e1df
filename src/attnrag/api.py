"""The Python API. Each function is one CLI command (``attnrag <group> <command>``), same names, same options.

    >>> from attnrag import api
    >>> api.synth_data("world", seed=0)
    >>> api.build_index("world/passages.jsonl", "world/index")
    >>> api.evaluate_retrieval("world/index", "world/test.jsonl", ks=(1, 5, 10))
    >>> api.train(setting="finetuned-distill", data="world", out="runs/ftd", index="world/index")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .data.formats import load_passages, load_qa
from .errors import InputError
from .io import write_jsonl
from .provenance import write_result
from .models import DEFAULT_RETRIEVER, fetch_model, list_models
from .retrieval.fusion import DEFAULT_DEPTH


def fetch_models(names: Sequence[str] | None = None, force: bool = False) -> list[Path]:
    """``attnrag models fetch``: provision registry models into the cache (the only network step)."""
    from .models import REGISTRY

    return [fetch_model(n, force=force) for n in (names or list(REGISTRY))]


def models() -> list[dict]:
    """``attnrag models list``."""
    return list_models()


def synth_data(out: str | Path, seed: int = 0, size: str = "default") -> Path:
    """``attnrag data synth``: write the fictional world (passages + train/dev/test)."""
    from .data.synth import generate_world, write_world

    return write_world(generate_world(seed=seed, size=size), out)


def build_index(passages: str | Path, out: str | Path, encoder: str | None = None, kind: str = "flat",
                batch_size: int = 64, progress: bool = True, similarity: str | None = None,
                fusion: str = "convex", weight: float | None = None, depth: int = DEFAULT_DEPTH,
                tune_on: str | Path | None = None, k1: float | None = None, b: float | None = None,
                **params) -> Path:
    """``attnrag index build``: a FAISS index of the passage tower's vectors, a BM25 index, or both fused.

    ``kind``: ``flat`` / ``ivf`` / ``hnsw`` (dense), ``bm25`` (lexical, :mod:`attnrag.retrieval.lexical`),
    or ``hybrid`` (both, fused per question, :mod:`attnrag.retrieval.hybrid`). A dense index records the
    encoder's similarity and a fingerprint of its passage tower, so a search with another encoder is
    refused (:func:`attnrag.retrieval.index.check_encoder`). A hybrid's lexical ``weight`` (convex
    fusion) is chosen on ``tune_on`` (a dev QA file: gold recall@1 where it has gold ids, else answer
    recall@1) when given, else 0.5.
    """
    from .retrieval.encoder import BiEncoder
    from .retrieval.hybrid import HybridIndex
    from .retrieval.index import build_index as _build
    from .retrieval.lexical import BM25Config, BM25Index

    corpus = load_passages(passages)
    bm25_options = {k: v for k, v in (("k1", k1), ("b", b)) if v is not None}
    if kind == "bm25":
        given = [name for name, value in (("encoder", encoder), ("similarity", similarity), ("weight", weight),
                                          ("tune_on", tune_on)) if value is not None] + sorted(params)
        if given:
            raise InputError(f"a bm25 index takes no dense or fusion options; got {', '.join(given)}", field="kind")
        return BM25Index.build(corpus, BM25Config(**bm25_options)).save(out)
    if bm25_options and kind != "hybrid":
        raise InputError(f"k1 / b are BM25 options; a '{kind}' index is dense", field="kind")
    model = BiEncoder.from_pretrained(encoder or DEFAULT_RETRIEVER, similarity=similarity)
    dense_kind = params.pop("dense_kind", "flat") if kind == "hybrid" else kind
    dense = _build(corpus, model, kind=dense_kind, batch_size=batch_size, progress=progress, **params)
    if kind != "hybrid":
        if tune_on is not None or weight is not None:
            raise InputError(f"weight / tune_on are hybrid options; a '{kind}' index is dense only", field="kind")
        return dense.save(out)
    lexical = BM25Index.build(corpus, BM25Config(**bm25_options))
    hybrid = HybridIndex(lexical, dense, fusion, 0.5 if weight is None else weight, depth)
    if tune_on is not None:
        if weight is not None:
            raise InputError("give either weight or tune_on, not both", field="weight")
        hybrid = tune_hybrid(hybrid, model, load_qa(tune_on))
    return hybrid.save(out)


def tune_hybrid(hybrid, encoder, dev_examples) -> object:
    """The hybrid with its convex weight chosen on ``dev_examples`` (gold recall@1, or answer recall@1)."""
    from .evaluate.retrieval import tune_hybrid_weight
    from .retrieval.hybrid import HybridIndex

    if hybrid.fusion != "convex":
        return hybrid
    tuned = tune_hybrid_weight(hybrid.lexical, hybrid.dense, encoder, dev_examples, depth=hybrid.depth)
    return HybridIndex(hybrid.lexical, hybrid.dense, "convex", tuned["weight"], hybrid.depth)


def _query_encoder(idx, encoder: str | None):
    """The query encoder a search needs: none for BM25, else the given one or the one that built the index."""
    from .retrieval.encoder import BiEncoder

    if not idx.needs_encoder:
        if encoder is not None:
            raise InputError("a bm25 index searches with no encoder", field="encoder")
        return None
    return BiEncoder.from_pretrained(encoder or idx.query_encoder_name or DEFAULT_RETRIEVER)


def retrieve(index: str | Path, questions: str | Path, k: int, out: str | Path,
             encoder: str | None = None) -> int:
    """``attnrag retrieve``: top-k passage ids and scores per question, written as jsonl."""
    from .retrieval.store import load_searcher

    examples = load_qa(questions)
    searcher, _ = load_searcher(index, encoder)  # any saved index or hybrid, an exported one included
    scores, ids = searcher.search([e.question for e in examples], k)
    rows = ({"id": e.id, "question": e.question, "passage_ids": row, "scores": [round(float(s), 6) for s in srow]}
            for e, row, srow in zip(examples, ids, scores, strict=True))
    return write_jsonl(out, rows)


def evaluate_retrieval(index: str | Path, data: str | Path, ks: Sequence[int] = (1, 5, 10),
                       out: str | Path | None = None, encoder: str | None = None, run: str | Path | None = None) -> dict:
    """``attnrag evaluate retrieval``: answer recall@k, gold recall@k and MRR of a retriever on a QA file."""
    from .evaluate.retrieval import evaluate_retrieval as _evaluate
    from .retrieval.store import load_indexed_corpus

    examples = load_qa(data)
    idx, passages = load_indexed_corpus(index)
    if run is not None:
        from .run import RunDir

        encoder = RunDir(run).retriever()
    model = _query_encoder(idx, encoder)
    result = _evaluate(idx, passages, model, examples, ks=tuple(ks))
    result = {k: v for k, v in result.items() if k not in ("retrieved", "retrieved_ids", "top_ids")}
    if out is not None:
        write_result(out, result)
    return result


def evaluate_qa(data: str | Path, out: str | Path | None = None, run: str | Path | None = None,
                reader: str | None = None, retriever: str | None = None, index: str | Path | None = None,
                n_passages: int = 5, ks: Sequence[int] = (1, 5, 10), batch_size: int = 8,
                max_new_tokens: int = 16, limit: int | None = None) -> dict:
    """``attnrag evaluate qa``: EM, F1 and recall@k of a run (or of base models on an index)."""
    from .evaluate.qa import evaluate_qa as _evaluate
    from .evaluate.qa import load_system

    examples = load_qa(data)[:limit] if limit else load_qa(data)
    if run is None and index is None:
        raise InputError("give --run or --index", field="run")
    system = load_system(run, reader=reader, retriever=retriever, index=index)
    result = _evaluate(system, examples, n_passages=n_passages, ks=tuple(ks), batch_size=batch_size,
                       max_new_tokens=max_new_tokens)
    result["system"] = system.source
    if out is not None:
        write_result(out, result)
    return result


def export_retriever(run: str | Path, out: str | Path, metrics: dict | list | None = None,
                     bm25: str | Path | None = None, hybrid_weight: float | None = None,
                     tune_on: str | Path | None = None, depth: int = DEFAULT_DEPTH) -> Path:
    """``attnrag export``: write a run's retriever (or a retriever directory) as a sentence-transformers model.

    ``run`` is a training run directory (its ``run.json`` names the retriever) or a saved retriever /
    model directory. The model card lists what the run's files say (base model, reader, setting, data,
    steps) and ``metrics``, which the caller measured (``{split: {"n": ..., metric: value}}``): a run
    itself only evaluates a small dev sample, so the demo and ``experiment paper`` pass their test figures.

    ``bm25``: a passages file or corpus directory; the export then also carries a BM25 index over it
    and the convex fusion weight (``hybrid_weight``, or chosen on ``tune_on``, a dev QA file, with this
    retriever), in attnrag's one hybrid format with the model as its dense side
    (:func:`attnrag.retrieval.store.load_searcher` loads it; its model card queries it without attnrag).
    """
    import json

    from .retrieval.encoder import BiEncoder
    from .retrieval.export import export_sentence_transformers
    from .run import RunDir

    run = Path(run)
    card: dict = {}
    source = run
    if RunDir.is_run(run):
        source = Path(RunDir(run).retriever())
        card["run"] = str(run)
        cfg = RunDir(run).config()
        if cfg is not None:
            teacher = cfg.get("teacher") or {}
            card.update({"base_model": cfg.get("retriever"), "reader": cfg.get("reader"), "setting": cfg.get("setting"),
                         "teacher": teacher.get("teacher") if isinstance(teacher, dict) else None,
                         "data": cfg.get("data"), "train_questions": cfg.get("train_questions"),
                         # only settings that fine-tune the reader ran its steps
                         "reader_steps": cfg.get("reader_steps") if cfg.get("setting") in
                         ("reader", "finetuned-distill", "joint") else None,
                         "distill_questions": cfg.get("distill_questions"),
                         "distill_steps": cfg.get("distill_steps")})
        saved = source / "attnrag_encoder.json"
        if saved.is_file() and not card.get("base_model"):
            card["base_model"] = json.loads(saved.read_text(encoding="utf-8")).get("source_name")
    encoder = BiEncoder.from_pretrained(source, device="cpu")
    if metrics:
        card["metrics"] = metrics
    from .provenance import Provenance

    card["provenance"] = Provenance.start().record()
    if bm25 is None:
        if hybrid_weight is not None or tune_on is not None:
            raise InputError("hybrid_weight and tune_on need bm25 (the passages to index)", field="bm25")
        return export_sentence_transformers(encoder, out, {k: v for k, v in card.items() if v is not None})
    if (hybrid_weight is None) == (tune_on is None):
        raise InputError("with bm25, give exactly one of hybrid_weight and tune_on", field="hybrid_weight")
    from .data.formats import load_corpus_dir, load_passages, load_qa
    from .evaluate.retrieval import tune_hybrid_weight
    from .retrieval.export import add_bm25
    from .retrieval.index import build_index as _build_dense
    from .retrieval.lexical import BM25Index

    passages = load_corpus_dir(bm25)[0] if Path(bm25).is_dir() else load_passages(bm25)
    lexical = BM25Index.build(passages)
    tuning = None
    if tune_on is not None:
        tuning = tune_hybrid_weight(lexical, _build_dense(passages, encoder, progress=False), encoder,
                                    load_qa(tune_on), depth=depth)
        hybrid_weight = tuning["weight"]
    card["hybrid"] = f"BM25 (bm25s, Snowball) + this model, convex weight {hybrid_weight:g} on BM25"
    return export_sentence_transformers(encoder, out, {k: v for k, v in card.items() if v is not None},
                                        extra=lambda tmp: add_bm25(tmp, lexical, hybrid_weight, depth, tuning))


def train(resume: bool = False, progress: bool = True, config: str | Path | None = None, **options) -> dict:
    """``attnrag train``: run one setting; options are :class:`attnrag.train.config.TrainConfig` fields
    (nested ones as dicts, ``teacher={"aggregation": "topk"}``), applied over the ``config`` file if given."""
    from .analysis.indicators import attach_indicators
    from .options import merge
    from .train.config import TrainConfig
    from .train.trainer import Trainer

    # every option given counts, ``None`` included: it resets an option to null over the config file
    if resume:
        ignored = sorted(k for k in options if k != "out") + (["config"] if config is not None else [])
        if ignored:
            raise InputError(f"--resume continues the run with the config.json stored in it, so these options "
                             f"would be ignored: {', '.join(ignored)}; drop them, or start a new run with "
                             "another --out", field=ignored[0])
        if not options.get("out"):
            raise InputError("--resume needs --out RUN", field="out")
        cfg = TrainConfig(out=str(options["out"]), data="(resumed)")
    else:
        base = TrainConfig.load(config).to_dict() if config is not None else {}
        cfg = TrainConfig.from_dict(merge(base, dict(options)))
    trainer = Trainer(cfg, resume=resume, progress=progress)
    attach_indicators(trainer)
    return trainer.run()


def analyze(runs: Sequence[str | Path], data: str | Path, n: int = 1000, out: str | Path = "analysis",
            **options) -> dict:
    """``attnrag analyze``: the paper's token-level analysis and indicators for one or more runs."""
    from .analysis.analyze import analyze as _analyze

    return _analyze(list(runs), data, n=n, out=out, **options)


def diagnose(reader: str | Path, data: str | Path, n: int | None = None, **options) -> dict:
    """``attnrag diagnose``: indicators of a reader on a sample and a verdict on distilling from it
    (``n=None`` and other options: :class:`~attnrag.analysis.config.DiagnoseConfig`'s defaults)."""
    from .analysis.diagnose import diagnose as _diagnose

    return _diagnose(reader, data, n=n, **options)
