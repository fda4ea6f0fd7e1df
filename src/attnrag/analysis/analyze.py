"""``analyze``: the paper's token-level analysis for several runs, as JSON, figures and an HTML example.

Each run is read by its own reader on the passages its own retriever returns, because that is what
the indicators are about: what the reader that would teach the retriever attends to, on the
passages it would actually be given.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..data.formats import load_qa
from ..data.records import Passage, QAExample
from ..errors import InputError
from ..io import write_json, write_jsonl
from ..provenance import Provenance, with_provenance
from ..run import RunDir
from ..models import DEFAULT_RETRIEVER
from ..reader.factory import load_reader
from ..reader.fid import as_analysis_reader
from ..reader.protocol import Reader
from ..retrieval.encoder import BiEncoder
from ..retrieval.index import PassageIndex, retrieve
from ..retrieval.store import load_indexed_corpus
from .indicators import ATTENTION_THRESHOLD, PAPER_NQ, QuestionResult, aggregate, json_safe, measure
from .relatedness import decode_tokens, related_mask
from .report import render_section, write_figures, write_html

RunSpec = str | Path | Reader


def load_examples(data: str | Path | Sequence[QAExample], n: int) -> list[QAExample]:
    """The first ``n`` questions of a QA file (or list) that have a non-empty answer."""
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}", field="n")
    examples = load_qa(data) if isinstance(data, (str, Path)) else list(data)
    examples = [e for e in examples if any(a.strip() for a in e.answers)][:n]
    if not examples:
        where = data if isinstance(data, (str, Path)) else None
        raise InputError("no question with a non-empty answer to analyse", path=where)
    return examples


def gold_answer(example: QAExample) -> str:
    """The answer used for teacher forcing: the first non-empty gold answer (as in training)."""
    return next(a for a in example.answers if a.strip())


def _index(index) -> tuple[PassageIndex, dict[str, Passage]]:
    if index is None:
        raise InputError("a reader given without a run directory needs an index (index=...)", field="index")
    if isinstance(index, PassageIndex):
        if index.passages is None:
            raise InputError("the index holds no passages; build it with build_index()", field="index")
        return index, index.passages
    return load_indexed_corpus(index)


def _reader(spec: RunSpec, device: str | None) -> Reader:
    return spec if isinstance(spec, Reader) else load_reader(spec, device=device)


def _retriever(spec, device: str | None) -> BiEncoder:
    if isinstance(spec, BiEncoder):
        return spec
    return BiEncoder.from_pretrained(spec or DEFAULT_RETRIEVER, device=device)


def load_run(spec: RunSpec, *, index=None, retriever=None, base_reader: RunSpec | None = None,
             device: str | None = None) -> tuple[Reader, BiEncoder, PassageIndex, dict[str, Passage]]:
    """Resolve one run entry to ``(reader, retriever, index, passages by id)``.

    ``spec`` is a training run directory (its reader, retriever and index, as
    :func:`~attnrag.evaluate.qa.load_system` loads them; an index *directory* given here replaces the
    run's when its passage tower did not change), a reader name or model directory, or a
    :class:`~attnrag.reader.protocol.Reader` (off-the-shelf: read with ``retriever``, default the project's default
    retriever, over ``index``). ``base_reader`` replaces the reader of every entry.
    """
    if not isinstance(spec, Reader) and RunDir.is_run(spec):
        from ..evaluate.qa import load_system

        path_index = index if isinstance(index, (str, Path)) else None
        system = load_system(run=spec, index=path_index, load_reader=base_reader is None, device=device)
        idx, by_id = system.index, system.passages
        if isinstance(index, PassageIndex):
            if not RunDir(spec).passage_tower_changed:
                idx, by_id = _index(index)
        reader = system.reader if base_reader is None else _reader(base_reader, device)
        return reader, system.retriever, idx, by_id
    idx, by_id = _index(index)
    reader = _reader(base_reader if base_reader is not None else spec, device)
    return reader, _retriever(retriever, device), idx, by_id


def _label(spec: RunSpec, i: int) -> str:
    if isinstance(spec, Reader):
        return spec.name or f"reader {i + 1}"
    return Path(spec).name or str(spec)


def measure_run(spec: RunSpec, examples: list[QAExample], *, n_passages: int = 5, signal: str = "prob",
                relatedness: str = "embedding", percentile: float = 95, layer: int | None = None,
                top_k: int = 10, batch_size: int = 4, index=None, retriever=None,
                base_reader: RunSpec | None = None, device: str | None = None, desc: str = "analyze",
                progress: bool = True) -> tuple[Reader, list[QuestionResult]]:
    """Retrieve the top ``n_passages`` with the run's retriever and compute every question's indicators."""
    reader, encoder, idx, by_id = load_run(spec, index=index, retriever=retriever, base_reader=base_reader,
                                           device=device)
    if not 1 <= n_passages <= len(idx):
        raise InputError(f"n_passages must be between 1 and the corpus size ({len(idx)}), got {n_passages}",
                         field="n_passages")
    encoder.eval()
    _, passages = retrieve(idx, by_id, encoder, [e.question for e in examples], n_passages)
    with tqdm(total=len(examples), desc=desc, unit="q", disable=not progress) as bar:
        results = measure(as_analysis_reader(reader), [e.question for e in examples], passages,
                          [gold_answer(e) for e in examples], signal=signal, relatedness=relatedness,
                          percentile=percentile, layer=layer, top_k=top_k, batch_size=batch_size,
                          progress=bar)
    return reader, results


def example_section(reader: Reader, label: str, result: QuestionResult, percentile: float) -> str:
    """The HTML section showing one question's passages as this run's reader attended to them."""
    view = result.view
    texts = decode_tokens(reader.tokenizer, view.token_ids)
    ans = related_mask(result.answer_rel, percentile)
    qst = related_mask(result.question_rel, percentile)
    passages = []
    for rank, passage in enumerate(view.passages):
        rows = [i for i in range(len(texts)) if view.passage_index[i] == rank]
        passages.append({"title": passage.title,
                         "tokens": [(texts[i], float(view.attention[i]), ans[i], qst[i]) for i in rows]})
    shown = {k: v for k, v in result.stats.items() if k in ("answer_attn_share", "answer_rho",
                                                              "question_attn_share", "question_rho")}
    return render_section(label, view.question, view.answer, passages, shown)


def analyze(runs: Sequence[RunSpec], data: str | Path | Sequence[QAExample], n: int = 1000,
            out: str | Path = "analysis", *, labels: Sequence[str] | None = None, n_passages: int = 5,
            signal: str = "prob", relatedness: str = "embedding", percentile: float = 95,
            index: str | Path | PassageIndex | None = None, base_reader: RunSpec | None = None,
            retriever: str | Path | BiEncoder | None = None, layer: int | None = None, top_k: int = 10,
            batch_size: int = 4, example: int = 0, device: str | None = None, progress: bool = True) -> dict:
    """Compute the indicators of every run on the first ``n`` questions of ``data`` and write the report.

    Writes ``out/indicators.json`` (per run: aggregates, wall seconds; plus the settings and the
    paper's NQ numbers), ``out/questions.jsonl`` (per-question stats), ``out/attention_hist.png``,
    ``out/spearman_hist.png``, ``out/indicators.png`` and ``out/example.html`` (question number
    ``example`` as each run's reader attends to it). Returns the content of ``indicators.json``.
    """
    provenance = Provenance.start()  # timed from here, so the record's wall time is the analysis's
    if not runs:
        raise InputError("give at least one run (a run directory, a reader name or path)", field="runs")
    labels = list(labels) if labels is not None else [_label(r, i) for i, r in enumerate(runs)]
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise InputError(f"need one distinct label per run ({len(runs)} runs, labels {labels})",
                         field="labels")
    examples = load_examples(data, n)
    if not 0 <= example < len(examples):
        raise InputError(f"example must be between 0 and {len(examples) - 1}, got {example}", field="example")
    out = Path(out)
    settings = {"n_questions": len(examples), "n_passages": n_passages, "signal": signal,
                "relatedness": relatedness,
                "embedding": "input embeddings" if layer is None else f"hidden states of layer {layer}",
                "layer": layer, "percentile": percentile, "top_k": top_k, "threshold": ATTENTION_THRESHOLD,
                "attention": "normalised over the question's passage content tokens (sums to 1)",
                "answer": "first non-empty gold answer, teacher-forced",
                "data": str(data) if isinstance(data, (str, Path)) else "<in memory>"}
    report: dict = {"settings": settings, "runs": [], "paper_nq": PAPER_NQ}
    aggregates, sections, rows = {}, [], []
    for spec, label in zip(runs, labels, strict=True):
        start = time.time()
        reader, results = measure_run(spec, examples, n_passages=n_passages, signal=signal,
                                      relatedness=relatedness, percentile=percentile, layer=layer,
                                      top_k=top_k, batch_size=batch_size, index=index, retriever=retriever,
                                      base_reader=base_reader, device=device, desc=f"analyze {label}",
                                      progress=progress)
        agg = aggregate([r.stats for r in results])
        aggregates[label] = agg
        sections.append(example_section(reader, label, results[example], percentile))
        rows += [{"run": label, "id": e.id, **r.stats} for e, r in zip(examples, results, strict=True)]
        source = reader.name if isinstance(spec, Reader) else str(spec)
        wall = round(time.time() - start, 2)
        report["runs"].append({"label": label, "source": source, "wall_seconds": wall, **agg})
        del reader, results
        gc.collect()
    out.mkdir(parents=True, exist_ok=True)
    report = with_provenance(json_safe(report), provenance)  # the file and the returned report carry the same record
    write_json(out / "indicators.json", report)
    write_jsonl(out / "questions.jsonl", json_safe(rows))
    write_figures(aggregates, out)
    write_html(out / "example.html", sections)
    return report
