"""End-to-end QA evaluation of a run (or of base models): retrieve, read, score.

A "run" here is anything :func:`load_system` accepts: a training run directory (its ``run.json``
names the reader, the retriever and the index it trained against) or explicit model names plus
an index directory, which is how the off-the-shelf checkpoint row is evaluated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.records import Passage, QAExample
from ..errors import InputError
from ..run import RunDir
from ..models import DEFAULT_READER, DEFAULT_RETRIEVER
from ..reader.decoder import DecoderReader
from ..reader.factory import load_reader as _load_reader
from ..reader.prompt import PromptConfig
from ..retrieval.encoder import BiEncoder
from ..retrieval.index import PassageIndex, build_index
from ..retrieval.store import load_indexed_corpus
from .metrics import exact_match, f1_score
from .retrieval import evaluate_retrieval

DEFAULT_KS = (1, 5, 10)


@dataclass
class System:
    """A reader, a retriever and the index its passage tower built."""

    reader: DecoderReader | None
    retriever: BiEncoder
    index: PassageIndex
    passages: dict[str, Passage]
    source: str


def run_reader_prompt(run: str | Path) -> PromptConfig | None:
    """The prompt a run's reader was trained and scored with, as the trainer chose it.

    The trainer reads with the run's configured prompt (``config.json``), except for a run started
    from another run (``init_run``), whose reader keeps the prompt saved with it. A run that did not
    fine-tune its reader (``offtheshelf-distill``) names the base model, which carries no prompt of its
    own (or, for a local model directory, possibly a different one): evaluating it with anything but
    the run's prompt would read other passage tokens than the teacher scored. ``None``: the reader's own.
    """
    fields = RunDir(run).reader_prompt_fields()
    return PromptConfig(**fields) if fields is not None else None


def load_system(run: str | Path | None = None, *, reader: str | None = None, retriever: str | None = None,
                index: str | Path | None = None, passages: list[Passage] | None = None, load_reader: bool = True,
                device: str | None = None) -> System:
    """Load a run directory, or base models with an index (built from ``passages`` when no index is given)."""
    prompt = None
    if run is not None:
        manifest = RunDir(run).manifest()
        if reader is None:
            reader = manifest["reader"]
            prompt = run_reader_prompt(run)
        retriever = retriever or manifest["retriever"]
        index = index if index is not None and not manifest.get("passage_tower_changed") else manifest["index"]
    reader = reader or DEFAULT_READER
    retriever = retriever or DEFAULT_RETRIEVER
    encoder = BiEncoder.from_pretrained(retriever, device=device)
    if index is not None:
        idx, by_id = load_indexed_corpus(index)
    elif passages is not None:
        idx = build_index(passages, encoder)
        by_id = idx.passages
    else:
        raise InputError("give an index directory or passages to build one", field="index")
    read = _load_reader(reader, prompt=prompt, device=device) if load_reader else None
    return System(read, encoder, idx, by_id, str(run) if run else f"{reader} + {retriever}")


def evaluate_qa(system: System, examples: list[QAExample], *, n_passages: int = 5, ks=DEFAULT_KS,
                batch_size: int = 8, max_new_tokens: int = 16, progress: bool = True,
                with_reader: bool = True, known_answers: dict | None = None) -> dict:
    """EM / F1 of generated answers and answer / gold recall@k of the retrieval, on ``examples``.

    ``known_answers``: the answers this same reader (same weights, prompt, precision and
    ``max_new_tokens``: the caller keeps one dict per reader) already gave, keyed by
    ``(question, passage ids read)``. A question whose prompt is in it is not generated again (two
    retrievers often return the same top K), and the new answers are added to it. The answers are
    the ones generating afresh would give: a prompt's answer does not depend on its batch.
    """
    if not examples:
        raise InputError("no questions to evaluate")
    max_k = max(max(ks), n_passages)
    if max_k > len(system.index):
        raise InputError(f"k={max_k} is larger than the corpus ({len(system.index)} passages)", field="k")
    start = time.time()
    system.retriever.eval()
    retrieval = evaluate_retrieval(system.index, system.passages, system.retriever, examples,
                                   ks=sorted(set(ks) | {max_k}))
    ids = retrieval.pop("retrieved_ids")
    out: dict = {k: v for k, v in retrieval.items()
                 if not (k.endswith(f"@{max_k}") and max_k not in ks) and k != "ks"}
    out["retrieval_seconds"] = round(time.time() - start, 2)
    predictions: list[str] = []
    if with_reader and system.reader is not None:
        start = time.time()
        known = {} if known_answers is None else known_answers
        keys = [(e.question, tuple(row[:n_passages])) for e, row in zip(examples, ids, strict=True)]
        todo, new = [], set()  # the first question of each prompt not answered yet
        for i, key in enumerate(keys):
            if key not in known and key not in new:
                new.add(key)
                todo.append(i)
        generated = system.reader.generate([examples[i].question for i in todo],
                                           [[system.passages[p] for p in keys[i][1]] for i in todo],
                                           max_new_tokens=max_new_tokens, batch_size=batch_size,
                                           progress=progress) if todo else []
        known.update({keys[i]: answer for i, answer in zip(todo, generated, strict=True)})
        predictions = [known[key] for key in keys]
        out["answers_generated"] = len(todo)
        out["em"] = float(np.mean([exact_match(p, e.answers) for p, e in zip(predictions, examples, strict=True)]))
        out["f1"] = float(np.mean([f1_score(p, e.answers) for p, e in zip(predictions, examples, strict=True)]))
        out["reader_seconds"] = round(time.time() - start, 2)
    out["predictions"] = [
        {"id": e.id, "question": e.question, "answers": e.answers, "prediction": p, "retrieved": row[:n_passages]}
        for e, p, row in zip(examples, predictions or [None] * len(examples), ids, strict=True)
    ]
    return out
